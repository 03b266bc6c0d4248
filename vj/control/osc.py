"""OSC server: every `/<param path> <value>` datagram becomes a Change on the queue; nothing else."""

from __future__ import annotations

import logging
import math
import queue
import socket
import threading

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_server import ThreadingOSCUDPServer

from vj.params import Change

log = logging.getLogger(__name__)


def _value(args: tuple) -> object | None:
    """One OSC argument is a scalar; several are a colour or a point. Anything else is refused."""
    vals = []
    for a in args:
        if isinstance(a, bool) or isinstance(a, (int, float)):
            if isinstance(a, float) and not math.isfinite(a):
                return None
            vals.append(a)
        elif isinstance(a, str) and len(a) < 64:
            vals.append(a)
        else:
            return None
    if not vals:
        return True  # a bare address triggers (events, toggles)
    return vals[0] if len(vals) == 1 else tuple(vals)


_FIXED = {"i": 4, "f": 4, "c": 4, "r": 4, "m": 4, "h": 8, "d": 8, "t": 8}
_EMPTY = set("TFNI[]")


def _padded_string_end(data: bytes, start: int) -> int:
    """Index after an OSC string (NUL-terminated, padded to 4 bytes) starting at `start`, or -1."""
    nul = data.find(b"\0", start)
    if nul < 0:
        return -1
    end = (nul + 4) & ~3
    return end if end <= len(data) else -1


def well_formed(data: bytes, depth: int = 0) -> bool:
    """Strict structural check of an OSC packet: python-osc reads truncated arguments as zeros."""
    if depth > 8 or len(data) < 4 or len(data) % 4:
        return False
    if data.startswith(b"#bundle\0"):
        pos = 16
        if len(data) < pos:
            return False
        while pos < len(data):
            if pos + 4 > len(data):
                return False
            size = int.from_bytes(data[pos:pos + 4], "big")
            pos += 4
            if size <= 0 or pos + size > len(data) or not well_formed(data[pos:pos + size], depth + 1):
                return False
            pos += size
        return True
    if not data.startswith(b"/"):
        return False
    pos = _padded_string_end(data, 0)
    if pos < 0:
        return False
    if pos == len(data):
        return True  # no type tags: an address alone
    if data[pos:pos + 1] != b",":
        return False
    tags_end = _padded_string_end(data, pos)
    if tags_end < 0:
        return False
    tags = data[pos + 1:data.index(b"\0", pos)].decode("ascii", "replace")
    pos = tags_end
    for tag in tags:
        if tag in _FIXED:
            pos += _FIXED[tag]
        elif tag in "sS":
            pos = _padded_string_end(data, pos)
        elif tag == "b":
            if pos + 4 > len(data):
                return False
            size = int.from_bytes(data[pos:pos + 4], "big")
            pos += 4 + ((size + 3) & ~3)
        elif tag not in _EMPTY:
            return False
        if pos < 0 or pos > len(data):
            return False
    return pos == len(data)


class _StrictDispatcher(Dispatcher):
    """Drops malformed packets before python-osc parses them, and counts them."""

    def __init__(self, on_reject):
        super().__init__()
        self._on_reject = on_reject

    def call_handlers_for_packet(self, data: bytes, client_address):
        if not well_formed(data):
            self._on_reject()
            return []
        try:
            return super().call_handlers_for_packet(data, client_address)
        except Exception as exc:  # a packet python-osc cannot parse must not reach the server loop
            log.debug("OSC packet refused: %s", exc)
            self._on_reject()
            return []


class OSCServer:
    """UDP OSC on host:port (127.0.0.1 unless asked); runs on its own thread and only enqueues Changes."""

    def __init__(self, changes: "queue.Queue[Change]", host: str = "127.0.0.1", port: int = 9000,
                 max_queue: int = 10000):
        self.changes = changes
        self.received = 0
        self.rejected = 0
        self._max_queue = max_queue
        dispatcher = _StrictDispatcher(self._count_reject)
        dispatcher.set_default_handler(self._on_message)
        try:
            self._server = ThreadingOSCUDPServer((host, port), dispatcher)
        except OSError as exc:
            raise OSError(f"cannot listen for OSC on {host}:{port}: {exc.strerror or exc}") from None
        # Bursts from a fader sweep overflow the default socket buffer; 4 MiB holds thousands of datagrams.
        self._server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, name="vj-osc", daemon=True)

    def start(self) -> "OSCServer":
        self._thread.start()
        log.info("OSC listening on udp://%s:%d", self.host, self.port)
        return self

    def _count_reject(self) -> None:
        self.received += 1
        self.rejected += 1

    def _on_message(self, address: str, *args) -> None:
        # Runs on the server thread: validate the shape only; the registry checks paths and ranges.
        self.received += 1
        value = _value(args)
        if value is None or not address.startswith("/") or self.changes.qsize() >= self._max_queue:
            self.rejected += 1
            return None
        self.changes.put(Change(address, value, "osc"))
        return None  # python-osc sends a non-None return value back as a reply

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
