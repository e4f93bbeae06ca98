"""FastAGI on every core: worker processes sharing one listening socket.

One event loop runs a call's steps one after another, so a burst that every call meets
at once (the greeting, the menu key, the status lookup) queues on one core while the
other cores idle. With HOTLINE_AGI_PROCESSES above one, `AgiProcesses` binds the port
itself and starts that many worker processes (spawned, not forked: `hotline serve`
already runs threads), each with the socket, its own event loop, `LiveCallStore` and
call-log writer. The kernel hands each connection to the worker whose `accept` comes
first, so a busy worker takes fewer; a call stays with its worker to its end (one
FastAGI session is one connection).

- The socket stays open in the parent: a worker that dies loses its calls in progress
  (Asterisk's AGI() returns and the dialplan goes on), never a connection still
  waiting in the kernel's queue; the parent starts another worker in its place. On
  stop the parent closes it first, so that new calls are refused at once (the
  dialplan's fallback) while the workers drain theirs.
- HOTLINE_AGI_MAX_SESSIONS caps the calls of all the workers together: each worker
  writes its own count into shared memory and adds up the others' before taking a call.
- On stop each worker gets SIGTERM and drains its calls as a single server does; a
  worker whose parent died (SIGKILL) does the same.
- A worker whose event loop is stuck (it has not written its heartbeat for
  HANG_SECONDS: a call blocking the loop, a deadlock in an extension) is killed and
  started again, as one that died: its calls hear nothing until then anyway.
- What stays per worker: a withheld number's hourly lookups are counted from the
  database plus the worker's own lookups not yet written, so two workers can go over
  that limit by the lookups of the last moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from hotline.services import settle_process
from hotline.settings import Settings
from ivr.asterisk.fastagi import (
    BEAT_SECONDS,
    CLOSE_WAIT,
    HANG_SECONDS,
    NOTICE_SECONDS,
    WATCH_GAP,
    FastAgiServer,
    new_event_loop,
    raise_fd_limit,
)

log = logging.getLogger(__name__)

RESPAWN_PAUSE = 1.0  # seconds between two starts of the same worker (one that dies at once)
START_TIMEOUT = 120.0  # seconds a worker may take to import and start serving (a loaded machine)


class SharedCounts:
    """Calls in progress of each worker, and when its loop last ran, in memory shared by the
    parent and the workers."""

    def __init__(self, counts: Any, beats: Any, index: int):
        self._counts, self._beats, self._index = counts, beats, index

    def total(self) -> int:
        return sum(self._counts)

    def set(self, calls: int) -> None:
        self._counts[self._index] = calls

    def pulse(self) -> None:
        """One heartbeat: time.monotonic(), the same clock in every process."""
        self._beats[self._index] = time.monotonic()

    async def beat(self) -> None:
        """The heartbeat while the loop runs."""
        while True:
            self.pulse()
            await asyncio.sleep(BEAT_SECONDS)


def bind(host: str, port: int) -> socket.socket:
    """The FastAGI port, bound (OSError if it cannot be); the first worker ready listens on it,
    so that no call waits in its queue before a worker can take it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class AgiProcesses:
    """`processes` FastAGI workers on one port (a `hotline serve` service, and `hotline agi`)."""

    def __init__(self, settings: Settings, processes: int):
        self.settings = settings
        self.processes = processes
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self._counts = self._context.Array("i", processes, lock=False)
        self._beats = self._context.Array("d", processes, lock=False)  # SharedCounts.beat
        self._workers: list[Any] = []
        self._started: list[float] = [0.0] * processes
        self._ended: set[int] = set()  # workers that stopped by themselves (exit code 0)
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._spawning = threading.Lock()  # no worker is started with the socket once it is closed
        self._watcher = threading.Thread(target=self._watch, name="fastagi-workers", daemon=True)
        self._checked = time.monotonic()  # the watch's last look at the heartbeats
        self.port: int | None = None

    @property
    def name(self) -> str:
        port = self.port if self.port is not None else self.settings.agi_port
        return f"FastAGI on agi://{self.settings.agi_host}:{port} ({self.processes} processes)"

    @property
    def calls(self) -> int:
        """Calls in progress in all the workers."""
        return sum(self._counts)

    def start(self) -> None:
        raise_fd_limit()  # the workers inherit it
        self._listener = bind(self.settings.agi_host, self.settings.agi_port)
        self.port = int(self._listener.getsockname()[1])
        started = [self._spawn(index) for index in range(self.processes)]
        self._workers = [worker for worker, _ in started]
        for index, (worker, ready) in enumerate(started):
            # Returns when every worker serves; one that ends first is a fault of the install.
            multiprocessing.connection.wait([ready, worker.sentinel], timeout=START_TIMEOUT)
            if not ready.poll():
                self.stop()
                raise RuntimeError(f"FastAGI worker {index + 1} did not start (exit code {worker.exitcode})")
            ready.close()
        self._watcher.start()

    def _spawn(self, index: int) -> tuple[Any, Connection]:
        ready, told = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=run_worker,
            args=(self.settings, self._listener, SharedCounts(self._counts, self._beats, index), told),
            name=f"hotline-agi-{index + 1}",
        )
        self._started[index] = time.monotonic()
        self._beats[index] = self._started[index] + START_TIMEOUT  # its imports first
        process.start()
        told.close()
        return process, ready

    def _watch(self) -> None:
        """Start a worker again in place of one that died or whose loop is stuck."""
        while not self._stopping.is_set():
            running = [w.sentinel for i, w in enumerate(self._workers) if i not in self._ended]
            multiprocessing.connection.wait(running, timeout=0.5)
            self._kill_stuck()
            for index, worker in enumerate(self._workers):
                if index in self._ended or worker.is_alive() or self._stopping.is_set():
                    continue
                self._counts[index] = 0  # its calls ended with it
                if worker.exitcode == 0:  # told to stop (SIGTERM to every process of a unit): drained
                    log.warning("FastAGI worker %d stopped after its drain; not started again", index + 1)
                    self._ended.add(index)
                    continue
                log.error(
                    "FastAGI worker %d ended (exit code %s); its calls in progress went back to "
                    "the dialplan; starting it again",
                    index + 1,
                    worker.exitcode,
                )
                self._stopping.wait(max(0.0, self._started[index] + RESPAWN_PAUSE - time.monotonic()))
                with self._spawning:
                    if self._stopping.is_set():
                        return
                    self._workers[index], ready = self._spawn(index)
                ready.close()

    def _kill_stuck(self) -> None:
        now = time.monotonic()
        gap, self._checked = now - self._checked, now
        if gap > WATCH_GAP:  # this process did not run either (Ctrl+Z, a paused VM): beats to come
            return
        for index, worker in enumerate(self._workers):
            silent = now - self._beats[index]
            if silent > HANG_SECONDS and index not in self._ended and worker.is_alive():
                log.error("FastAGI worker %d: its event loop stuck for %.0f s; killed", index + 1, silent)
                worker.kill()  # the watch starts it again, once it is gone
                worker.join(5)

    def stop(self) -> None:
        """The port closes (new calls are refused: the dialplan's fallback takes them); every
        worker drains its calls (HOTLINE_AGI_DRAIN_SECONDS) and ends."""
        with self._spawning:
            self._stopping.set()
            if self._listener is not None:
                self._listener.close()  # the workers close theirs at SIGTERM, which ends the socket
        if self._watcher.is_alive():
            self._watcher.join()
        for worker in self._workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: the drain
        deadline = time.monotonic() + self.settings.agi_drain_seconds + NOTICE_SECONDS + CLOSE_WAIT + 15
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("FastAGI worker %s did not end in time; killed", worker.name)
                worker.kill()
                worker.join(5)


def run_worker(settings: Settings, listener: socket.socket, counts: SharedCounts, ready: Connection) -> None:
    """A worker process: the FastAGI server on the shared socket until SIGTERM or the parent's end;
    it says so on `ready` once it serves."""
    from hotline.db import Database
    from ivr.asterisk.session import BACKEND, make_handler
    from ivr.livecalls import LiveCallStore

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C reaches the parent, which stops the workers
    db = Database(settings.database_url)
    store = LiveCallStore(db, settings, BACKEND)
    handler = make_handler(store, settings)
    settle_process()  # as `hotline agi` does

    async def main() -> None:
        server = FastAgiServer(
            handler,
            settings.agi_host,
            settings.agi_port,
            max_sessions=settings.agi_max_sessions,
            answer_timeout=settings.agi_answer_timeout,
            listener=listener,
            counts=counts,
        )
        await server.start()
        heartbeat = asyncio.create_task(counts.beat())
        # Beating before it says it serves: a loop stuck from its first turn is not
        # taken for one still starting (its beat was START_TIMEOUT ahead until then).
        counts.pulse()
        with contextlib.suppress(OSError):  # a respawned worker's parent does not wait
            ready.send_bytes(b"ready")
        ready.close()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        parent = multiprocessing.parent_process()
        if parent is not None:  # the parent killed: drain and end, as on SIGTERM
            sentinel = parent.sentinel

            def parent_gone() -> None:
                loop.remove_reader(sentinel)  # the pipe stays readable: the loop would spin
                stop.set()

            loop.add_reader(sentinel, parent_gone)
        await stop.wait()
        await server.stop(grace=settings.agi_drain_seconds)
        heartbeat.cancel()

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(main())
    finally:
        counts.set(0)
        store.close()
        db.dispose()
