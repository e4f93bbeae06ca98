"""A fake AMI server for tests and demos, speaking the Asterisk Manager Interface.

`FakeAmiServer` is an AMI server on loopback: banner, Login, Ping, Originate, and
events pushed on demand; `restart()` closes everything and listens again, as an
Asterisk restart does.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time


class FakeAmiServer:
    """An AMI server on loopback that replays the events it is given."""

    banner = "Asterisk Call Manager/9.0.0\r\n"

    def __init__(self, username: str = "hotline", secret: str = "s3cret", host: str = "127.0.0.1"):
        self.username, self.secret = username, secret
        self.host = host
        self.port = 0
        self.actions: list[dict[str, str]] = []
        self.logins = 0
        self.originate_reason = "4"
        self.answer_pings = True  # False: a hung Asterisk that keeps the socket open
        self._clients: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None
        self.logged_in = threading.Condition()

    def start(self) -> FakeAmiServer:
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                fake._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self._server = Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        return f"ami://{self.username}:{self.secret}@{self.host}:{self.port}"

    def stop(self) -> None:
        """Close the listener and every connection (Asterisk going down)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            for client in self._clients:
                with contextlib.suppress(OSError):
                    client.shutdown(socket.SHUT_RDWR)
                client.close()
            self._clients.clear()

    def restart(self) -> None:
        """Asterisk restarts: every connection drops, then it listens on the same port."""
        self.stop()
        self.start()

    def wait_logins(self, count: int, timeout: float = 10.0) -> bool:
        with self.logged_in:
            return self.logged_in.wait_for(lambda: self.logins >= count, timeout)

    def emit(self, *events: dict[str, str]) -> None:
        """Send events to every logged-in client."""
        data = b"".join(_packet(e) for e in events)
        with self._lock:
            for client in list(self._clients):
                try:
                    client.sendall(data)
                except OSError:
                    self._clients.remove(client)

    def _serve(self, conn: socket.socket) -> None:
        conn.sendall(self.banner.encode())
        buffer = b""
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                raw, buffer = buffer.split(b"\r\n\r\n", 1)
                action = dict(line.split(": ", 1) for line in raw.decode().split("\r\n") if ": " in line)
                self.actions.append(action)
                self._act(conn, action)

    def _act(self, conn: socket.socket, action: dict[str, str]) -> None:
        name, action_id = action.get("Action", ""), action.get("ActionID", "")
        if name == "Login":
            if action.get("Username") == self.username and action.get("Secret") == self.secret:
                with self._lock:  # events emitted from now on reach this client, after these two
                    self._clients.append(conn)
                    conn.sendall(
                        _packet(
                            {
                                "Response": "Success",
                                "ActionID": action_id,
                                "Message": "Authentication accepted",
                            }
                        )
                    )
                    conn.sendall(
                        _packet({"Event": "FullyBooted", "Privilege": "system,all", "Status": "Fully Booted"})
                    )
                with self.logged_in:
                    self.logins += 1
                    self.logged_in.notify_all()
            else:
                conn.sendall(
                    _packet({"Response": "Error", "ActionID": action_id, "Message": "Authentication failed"})
                )
        elif name == "Ping" and not self.answer_pings:
            return
        elif name == "Ping":
            conn.sendall(
                _packet(
                    {
                        "Response": "Success",
                        "ActionID": action_id,
                        "Ping": "Pong",
                        "Timestamp": f"{time.time():.6f}",
                    }
                )
            )
        elif name == "Originate":
            if not action.get("Channel", "").startswith("PJSIP/"):
                conn.sendall(
                    _packet({"Response": "Error", "ActionID": action_id, "Message": "Originate failed"})
                )
                return
            conn.sendall(
                _packet(
                    {"Response": "Success", "ActionID": action_id, "Message": "Originate successfully queued"}
                )
            )
            success = self.originate_reason == "4"
            conn.sendall(
                _packet(
                    {
                        "Event": "OriginateResponse",
                        "Privilege": "call,all",
                        "ActionID": action_id,
                        "Response": "Success" if success else "Failure",
                        "Channel": action["Channel"],
                        "Context": action.get("Context", ""),
                        "Exten": action.get("Exten", ""),
                        "Reason": self.originate_reason,
                        "Uniqueid": action.get("ChannelId", "<null>"),
                        "CallerIDNum": "<unknown>",
                        "CallerIDName": "<unknown>",
                    }
                )
            )
        elif name == "Logoff":
            conn.sendall(
                _packet({"Response": "Goodbye", "ActionID": action_id, "Message": "Thanks for all the fish."})
            )
        else:
            conn.sendall(
                _packet({"Response": "Error", "ActionID": action_id, "Message": "Invalid/unknown command"})
            )


def _packet(fields: dict[str, str]) -> bytes:
    return ("".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode()


def incoming_call_events(
    uniqueid: str,
    *,
    caller: str = "79001234567",
    exten: str = "73435674530",
    answered: bool = False,
    cause: str = "16",
    cdr_first: bool = False,
) -> list[dict[str, str]]:
    """The AMI events of a call to the hotline that rings, maybe answers, and hangs up."""
    channel = f"PJSIP/trunk-{uniqueid.replace('.', '')[-8:]}"
    base = {
        "Privilege": "call,all",
        "Channel": channel,
        "CallerIDNum": caller,
        "CallerIDName": "<unknown>",
        "Context": "from-trunk",
        "Exten": exten,
        "Priority": "1",
        "Uniqueid": uniqueid,
        "Linkedid": uniqueid,
    }
    events = [
        {"Event": "Newchannel", **base, "ChannelState": "0", "ChannelStateDesc": "Down"},
        {"Event": "Newstate", **base, "ChannelState": "4", "ChannelStateDesc": "Ring"},
    ]
    if answered:
        events.append({"Event": "Newstate", **base, "ChannelState": "6", "ChannelStateDesc": "Up"})
    hangup = {"Event": "Hangup", **base, "Cause": cause, "Cause-txt": "Normal Clearing"}
    cdr = {
        "Event": "Cdr",
        "Privilege": "cdr,all",
        "AccountCode": "",
        "Source": caller,
        "Destination": exten,
        "DestinationContext": "from-trunk",
        "CallerID": f'"" <{caller}>',
        "Channel": channel,
        "DestinationChannel": "",
        "LastApplication": "AGI" if answered else "Ringing",
        "LastData": "",
        "StartTime": "2025-11-24 10:00:00",
        "AnswerTime": "",
        "EndTime": "2025-11-24 10:00:07",
        "Duration": "7",
        "BillableSeconds": "0" if not answered else "5",
        "Disposition": "ANSWERED" if answered else "NO ANSWER",
        "AMAFlags": "DOCUMENTATION",
        "UniqueID": uniqueid,
        "UserField": "",
    }
    events += [cdr, hangup] if cdr_first else [hangup, cdr]
    return events
