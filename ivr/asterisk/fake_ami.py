"""A fake AMI server for tests and demos, speaking the Asterisk Manager Interface.

`FakeAmiServer` is an AMI server on loopback that answers as Asterisk 22 does
(docs/ami.md, main/manager.c): banner, Login (a wrong secret: `Authentication failed`
after `login_failure_delay`, then the connection closes), Ping, Originate (`Success` at
once unless the channel has no `/`, the `OriginateResponse` later: Reason 0 at once for a
technology not in `technologies`), Logoff (`Goodbye`, then it closes), and events pushed
on demand. It parses and writes its packets with `ivr.asterisk.amievents`, the functions
the hotline itself uses.
`restart()` closes everything and listens again, as an Asterisk restart does; while
"starting" (`starting(resets=…, silent_logins=…)`) it resets new connections before
the banner and leaves logins unanswered, as a real Asterisk did during `core stop now`
and the start that followed.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import struct
import threading
import time

from ivr.asterisk.amievents import (
    MAX_PACKET,
    AmiAction,
    format_packet,
    parse_action,
    parse_fields,
    split_packets,
)

_LIST_COMMANDS = "Use Action: ListCommands to show available commands."


class FakeAmiServer:
    """An AMI server on loopback that replays the events it is given."""

    banner = "Asterisk Call Manager/9.0.0\r\n"  # Asterisk 22's AMI version

    def __init__(self, username: str = "hotline", secret: str = "s3cret", host: str = "127.0.0.1"):
        self.username, self.secret = username, secret
        self.host = host
        self.port = 0
        self.actions: list[AmiAction] = []
        self.received_at: dict[str, float] = {}  # action id -> time.time() it arrived
        self.logins = 0
        self.connections = 0
        self.originate_reason = "4"
        self.originate_delay = 0.0  # seconds the engineer's phone rings before the outcome
        #: Channel technologies this Asterisk has (chan_sip is gone since Asterisk 21): an
        #: Originate to another one is queued, then fails (`OriginateResponse`, Reason 0).
        self.technologies = {"PJSIP", "Local", "IAX2", "DAHDI"}
        #: The dialplan's contexts (None: every Exten exists). An Originate to an Exten in
        #: another context is refused at once, as manager.c checks ast_exists_extension.
        self.contexts: set[str] | None = None
        self.login_failure_delay = 1.0  # manager.c sleeps 1 s before `Authentication failed`
        self._channels = 0  # numbers the channels an Originate creates (PJSIP/101-00000001)
        self.answer_pings = True  # False: a hung Asterisk that keeps the socket open
        self.resets_left = 0  # connections to reset before the banner (Asterisk starting)
        self.silent_logins_left = 0  # logins to leave unanswered (Asterisk starting)
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

            def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
                request.close()  # no FIN first: a connection marked by _reset() ends with a reset

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
                _reset(client)
            self._clients.clear()

    def restart(self) -> None:
        """Asterisk restarts: every connection drops, then it listens on the same port."""
        self.stop()
        self.start()

    def starting(self, *, resets: int = 0, silent_logins: int = 0) -> None:
        """Behave as an Asterisk still starting for the next connections and logins."""
        self.resets_left, self.silent_logins_left = resets, silent_logins

    def wait_logins(self, count: int, timeout: float = 10.0) -> bool:
        with self.logged_in:
            return self.logged_in.wait_for(lambda: self.logins >= count, timeout)

    def named(self, name: str) -> list[AmiAction]:
        """The actions received with this name, in order."""
        return [a for a in self.actions if a.name == name]

    def emit(self, *events: dict[str, str]) -> None:
        """Send events to every logged-in client."""
        data = b"".join(format_packet(e) for e in events)
        with self._lock:
            for client in list(self._clients):
                try:
                    client.sendall(data)
                except OSError:
                    self._clients.remove(client)

    # --- one connection -----------------------------------------------------------------

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            reset = self.resets_left > 0
            self.resets_left -= reset
        if reset:
            _reset(conn)
            return
        conn.sendall(self.banner.encode())
        buffer = b""
        while True:
            try:
                chunk = conn.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            packets, buffer = split_packets(buffer + chunk)
            if len(buffer) > MAX_PACKET:
                return  # Asterisk drops a client that sends an endless line
            for text in packets:
                action = parse_action(parse_fields(text))
                self.received_at[action.action_id] = time.time()
                self.actions.append(action)
                if not self._act(conn, action):
                    # manager.c: an action returning -1 ends the session; the socket closes.
                    with self._lock:
                        if conn in self._clients:
                            self._clients.remove(conn)
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_WR)
                    return

    def _act(self, conn: socket.socket, action: AmiAction) -> bool:
        """Answer one action as manager.c does; False when Asterisk ends the session."""
        reply = {"ActionID": action.action_id}
        with self._lock:
            authenticated = conn in self._clients
        if not authenticated and action.name.lower() not in {"login", "logoff", "challenge"}:
            conn.sendall(format_packet({"Response": "Error", **reply, "Message": "Permission denied"}))
            return True
        if action.name == "Login":
            if self.silent_logins_left > 0:
                self.silent_logins_left -= 1
                return True
            if authenticated:
                conn.sendall(
                    format_packet({"Response": "Success", **reply, "Message": "Already authenticated"})
                )
                return True
            if action.get("Username") == self.username and action.get("Secret") == self.secret:
                with self._lock:  # events emitted from now on reach this client, after these two
                    self._clients.append(conn)
                    conn.sendall(
                        format_packet({"Response": "Success", **reply, "Message": "Authentication accepted"})
                    )
                    booted = {
                        "Event": "FullyBooted",
                        "Privilege": "system,all",
                        "Uptime": "3600",
                        "LastReload": "3600",
                        "Status": "Fully Booted",
                    }
                    conn.sendall(format_packet(booted))
                with self.logged_in:
                    self.logins += 1
                    self.logged_in.notify_all()
                return True
            # action_login: sleep(1), the error, then -1: the session ends.
            time.sleep(self.login_failure_delay)
            conn.sendall(format_packet({"Response": "Error", **reply, "Message": "Authentication failed"}))
            return False
        if action.name == "Ping":
            if self.answer_pings:
                pong = {"Response": "Success", **reply, "Ping": "Pong", "Timestamp": f"{time.time():.6f}"}
                conn.sendall(format_packet(pong))
        elif action.name == "Originate":
            self._originate(conn, action, reply)
        elif action.name == "Logoff":
            conn.sendall(
                format_packet({"Response": "Goodbye", **reply, "Message": "Thanks for all the fish."})
            )
            return False  # action_logoff returns -1: the session ends
        else:
            unknown = f"Invalid/unknown command: {action.name}. {_LIST_COMMANDS}"
            conn.sendall(format_packet({"Response": "Error", **reply, "Message": unknown}))
        return True

    def _originate(self, conn: socket.socket, action: AmiAction, reply: dict[str, str]) -> None:
        """action_originate with Async: only a malformed channel or an Exten the dialplan
        does not have is refused at once; every other outcome, a technology Asterisk does
        not have included, comes as an event."""
        channel = action.get("Channel")
        refused = None
        if not channel or "/" not in channel:
            refused = "Invalid channel" if channel else "Channel not specified"
        elif action.get("Exten") and self.contexts is not None and action.get("Context") not in self.contexts:
            refused = "Extension does not exist."
        if refused:
            conn.sendall(format_packet({"Response": "Error", **reply, "Message": refused}))
            return
        queued = {"Response": "Success", **reply, "Message": "Originate successfully queued"}
        conn.sendall(format_packet(queued))
        if channel.split("/", 1)[0] not in self.technologies:
            # fast_originate: no channel driver, so no channel; the outcome comes at once.
            self._originate_response(conn, action, "0")
            return
        timer = threading.Timer(
            self.originate_delay, self._originate_response, (conn, action, self.originate_reason)
        )
        timer.daemon = True
        timer.start()

    def _originate_response(self, conn: socket.socket, action: AmiAction, reason: str) -> None:
        """fast_originate's event. A channel that was not answered is gone by then: Channel
        is the one asked for, Uniqueid the ChannelId asked for (or `<unknown>`)."""
        success = reason == "4"
        channel, uniqueid = action.get("Channel")[:79], action.get("ChannelId")  # AST_CHANNEL_NAME
        if success:  # the new channel's name and uniqueid
            with self._lock:
                self._channels += 1
                channel = f"{channel}-{self._channels:08x}"
                uniqueid = uniqueid or f"{int(time.time())}.{self._channels}"
        name, number = parse_callerid(action.get("CallerID"))
        event = {
            "Event": "OriginateResponse",
            "Privilege": "call,all",
            "ActionID": action.action_id,
            "Response": "Success" if success else "Failure",
            "Channel": channel,
            "Context": action.get("Context"),
            "Exten": action.get("Exten"),
            "Reason": reason,
            "Uniqueid": uniqueid or "<unknown>",
            "CallerIDNum": number or "<unknown>",
            "CallerIDName": name or "<unknown>",
        }
        with contextlib.suppress(OSError):
            conn.sendall(format_packet(event))


def parse_callerid(value: str) -> tuple[str, str]:
    """An Originate's `CallerID` as (name, number), as main/callerid.c's ast_callerid_parse
    and manager.c's ast_shrink_phone_number read it ("" where there is none)."""
    text = value.strip()
    quoted = len(text) > 1 and text[0] == text[-1] == '"'
    text = text[1:-1] if quoted else text
    if "<" in text:
        head, _, number = text.rpartition("<")
        name = head.strip()
        number = number.rpartition(">")[0] if ">" in number else number
        name = name[1:-1] if len(name) > 1 and name[0] == name[-1] == '"' else name
    else:
        shrunk = _shrink(text)
        if not quoted and shrunk and all(c in "0123456789*#+" for c in shrunk):
            return "", shrunk
        name, number = text, ""
    return name, _shrink(number)


def _shrink(number: str) -> str:
    """ast_shrink_phone_number: no spaces, parentheses, dashes (outside brackets) or dots."""
    kept, bracketed = [], 0
    for i, c in enumerate(number):
        bracketed += (c == "[") - (c == "]")
        if c in "( )" or (c == "-" and not bracketed) or (c == "." and i < len(number) - 1):
            continue
        kept.append(c)
    return "".join(kept)


def _reset(conn: socket.socket) -> None:
    """End a connection with a TCP reset, as a dying Asterisk does (the client sees ECONNRESET).

    Its handler thread closes it: SHUT_RD wakes that thread's recv() without sending anything.
    """
    with contextlib.suppress(OSError):
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.shutdown(socket.SHUT_RD)


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
