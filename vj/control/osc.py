"""OSC over UDP: param paths, /norm/ faders and /cmd/ commands become Changes; changed values go back out.

Address space (the same paths as presets, OSCQuery and the web page):
  /<param path> value...     set a param (`/fx/kaleidoscope/sides i 8`, a colour as `fff`, `ffff` or `r`)
  /norm/<param path> x...    the same through 0..1 (faders): x is mapped across the param's range
  /cmd/...                   a command from state.COMMANDS; arguments optional (`/cmd/tap`, `/cmd/preset/load s name`)
  /vj/register [i port] [s "norm"]   send feedback to the sender's address (at `port`, default its source port)
  /vj/unregister [i port]

Everything received is checked at the door: a strict parser (python-osc reads truncated arguments as zeros),
an optional allow-list of client addresses, the newest ControlSnapshot for paths and value types, and the
hub's queue bound. A refused packet or message is counted, reported once per reason and never raised.
Bundles with a future timetag wait on a small scheduler thread, so the socket thread never sleeps.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import logging
import math
import queue
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, NamedTuple

from pythonosc.osc_message_builder import OscMessageBuilder

from vj.control.state import COMMANDS, FEATURE_KEYS, ControlHub, ControlSnapshot
from vj.params import Change, Param, Value

log = logging.getLogger(__name__)

NTP_UNIX_OFFSET_S = 2208988800          # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
MAX_DATAGRAM = 65536
MAX_BUNDLE_DEPTH = 8
MAX_STRING_ARG = 64                     # longest string argument accepted (preset names, labels)
MAX_DYNAMIC_TARGETS = 16                # clients registered with /vj/register; the oldest is dropped beyond this


class OSCError(ValueError):
    """A packet that is not well-formed OSC, or a message that does not fit the address it is sent to."""


class Message(NamedTuple):
    address: str
    tags: str                           # type tags without the comma
    args: tuple
    time_s: float | None                # Unix time its bundle asks for; None: now


# ---- parsing -------------------------------------------------------------------------------------

def _need(data: bytes, pos: int, n: int) -> None:
    if n < 0 or pos + n > len(data):
        raise OSCError(f"argument runs past the end of the packet ({pos}+{n} > {len(data)})")


def _string(data: bytes, pos: int) -> tuple[str, int]:
    """An OSC string (UTF-8 here, NUL-terminated, padded to 4 bytes) at `pos`, and the index after it."""
    nul = data.find(b"\0", pos)
    if nul < 0:
        raise OSCError("unterminated string")
    end = (nul + 4) & ~3
    if end > len(data):
        raise OSCError("string padding runs past the end")
    if data[nul:end].count(0) != end - nul:
        raise OSCError("string padding is not NUL bytes")
    try:
        return data[pos:nul].decode("utf-8"), end
    except UnicodeDecodeError:
        raise OSCError("string is not UTF-8") from None


def timetag_to_unix(raw: int) -> float | None:
    """64-bit NTP timetag -> Unix seconds; None for the special value 1 ("immediately")."""
    if raw == 1:
        return None
    return (raw >> 32) - NTP_UNIX_OFFSET_S + (raw & 0xFFFFFFFF) / 2.0 ** 32


def _message(data: bytes, time_s: float | None) -> Message:
    address, pos = _string(data, 0)
    if not address.startswith("/"):
        raise OSCError("address does not start with '/'")
    if pos == len(data):
        return Message(address, "", (), time_s)          # an address alone (OSC 1.0 allows it)
    tags, pos = _string(data, pos)
    if not tags.startswith(","):
        raise OSCError("type tags do not start with ','")
    args: list = []
    stack = [args]
    for tag in tags[1:]:
        if tag in "ifcrm":
            _need(data, pos, 4)
            raw = data[pos:pos + 4]
            pos += 4
            if tag == "i":
                v = struct.unpack(">i", raw)[0]
            elif tag == "f":
                v = struct.unpack(">f", raw)[0]
            elif tag == "c":
                v = chr(struct.unpack(">I", raw)[0] & 0x1FFFFF) if raw[0] == 0 else None
                if v is None:
                    raise OSCError("char out of range")
            elif tag == "r":                                     # RGBA, 8 bits each, red in the high byte
                v = tuple(b / 255.0 for b in raw)
            else:
                v = bytes(raw)                                   # MIDI: kept as bytes, refused by routing
        elif tag in "dht":
            _need(data, pos, 8)
            raw = data[pos:pos + 8]
            pos += 8
            v = (struct.unpack(">d", raw)[0] if tag == "d" else struct.unpack(">q", raw)[0] if tag == "h"
                 else timetag_to_unix(struct.unpack(">Q", raw)[0]))
        elif tag in "sS":
            v, pos = _string(data, pos)
        elif tag == "b":
            _need(data, pos, 4)
            size = struct.unpack(">i", data[pos:pos + 4])[0]
            pos += 4
            padded = (size + 3) & ~3
            _need(data, pos, padded)
            v = bytes(data[pos:pos + size])
            pos += padded
        elif tag in "TF":
            v = tag == "T"
        elif tag in "NI":
            v = None
        elif tag == "[":
            inner: list = []
            stack[-1].append(inner)
            stack.append(inner)
            continue
        elif tag == "]":
            if len(stack) < 2:
                raise OSCError("']' without '['")
            stack.pop()
            continue
        else:
            raise OSCError(f"unknown type tag {tag!r}")
        stack[-1].append(v)
    if len(stack) != 1:
        raise OSCError("'[' without ']'")
    if pos != len(data):
        raise OSCError(f"{len(data) - pos} bytes after the last argument")
    return Message(address, tags[1:], tuple(args), time_s)


def parse_packet(data: bytes, _depth: int = 0, _outer_s: float | None = None) -> list[Message]:
    """Every message in a packet with the time its bundle asks for, or OSCError. Strict: nothing is guessed."""
    if len(data) < 4 or len(data) % 4:
        raise OSCError(f"packet size {len(data)} is not a positive multiple of 4")
    if data.startswith(b"#bundle\0"):
        if _depth >= MAX_BUNDLE_DEPTH:
            raise OSCError(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
        if len(data) < 16:
            raise OSCError("bundle without a timetag")
        t = timetag_to_unix(int.from_bytes(data[8:16], "big"))
        if _outer_s is not None and (t is None or t < _outer_s):
            t = _outer_s                       # a nested bundle never runs before the bundle holding it
        out: list[Message] = []
        pos = 16
        while pos < len(data):
            _need(data, pos, 4)
            size = int.from_bytes(data[pos:pos + 4], "big", signed=True)
            pos += 4
            if size <= 0 or size % 4 or pos + size > len(data):
                raise OSCError(f"bundle element of size {size} at {pos - 4} does not fit")
            out.extend(parse_packet(data[pos:pos + size], _depth + 1, t))
            pos += size
        return out
    if not data.startswith(b"/"):
        raise OSCError("neither a message nor a bundle")
    return [_message(data, _outer_s)]


def well_formed(data: bytes) -> bool:
    """True when `data` is a well-formed OSC packet (message or bundle)."""
    try:
        parse_packet(data)
        return True
    except OSCError:
        return False


def encode_message(address: str, value: Value) -> bytes:
    """One OSC message carrying a param value: float f, int i, bool T/F, str s, tuple of floats f f..."""
    b = OscMessageBuilder(address)
    if isinstance(value, bool):
        b.add_arg(value)
    elif isinstance(value, int):
        b.add_arg(value, "i")
    elif isinstance(value, float):
        b.add_arg(value, "f")
    elif isinstance(value, str):
        b.add_arg(value, "s")
    elif isinstance(value, (tuple, list)):
        for v in value:
            b.add_arg(float(v), "f")
    return b.build().dgram


def parse_target(spec: str) -> tuple[str, int]:
    """'host:port' (or ':port', or 'port') -> (host, port) for --osc-feedback; ValueError says why."""
    host, _, port = spec.strip().rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"OSC feedback target {spec!r}: expected host:port") from None
    if not 0 < p < 65536:
        raise ValueError(f"OSC feedback target {spec!r}: port {p} out of range")
    return host, p


class AllowList:
    """Client addresses allowed to talk to a control server: IPs or networks ('192.168.1.0/24'). Empty: all."""

    def __init__(self, entries: Iterable[str] = ()):
        self.networks = tuple(ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip())
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        ok = self._seen.get(host)
        if ok is None:
            try:
                ip = ipaddress.ip_address(host.split("%")[0])
                if ip.version == 6 and ip.ipv4_mapped is not None:
                    ip = ip.ipv4_mapped
                ok = any(ip in n for n in self.networks)
            except ValueError:
                ok = False
            if len(self._seen) < 4096:          # a flood of spoofed sources must not grow this without bound
                self._seen[host] = ok
        return ok


# ---- routing -------------------------------------------------------------------------------------

def _scalars(args: tuple) -> list | None:
    """Clean argument values (nil and impulse dropped), or None when one of them is refused."""
    vals = []
    for a in args:
        if a is None:
            continue
        if isinstance(a, bool) or isinstance(a, int):
            vals.append(a)
        elif isinstance(a, float):
            if not math.isfinite(a):
                return None
            vals.append(a)
        elif isinstance(a, str) and len(a) <= MAX_STRING_ARG:
            vals.append(a)
        elif isinstance(a, tuple):                 # an 'r' colour
            vals.append(a)
        else:
            return None                            # blobs, MIDI, arrays, long strings
    return vals


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


class Router:
    """OSC address + arguments -> Change, checked against the newest snapshot (paths, kinds, ranges)."""

    def __init__(self, hub: ControlHub):
        self.hub = hub
        self._params: tuple[Param, ...] | None = None
        self._index: dict[str, Param] = {}

    def param(self, path: str) -> Param | None:
        snap = self.hub.snapshot
        if snap.params is not self._params:
            self._params = snap.params
            self._index = {p.path: p for p in snap.params}
        return self._index.get(path)

    def change(self, address: str, args: tuple, source: str = "osc") -> Change | None:
        """The Change a message asks for; None when it asks for nothing (a fader's release); OSCError if refused.

        An address the active preset aliases ([osc.alias]) is routed as its target, with the same checks.
        """
        target = self.hub.snapshot.aliases.get(address)
        if target is None:
            return self._change(address, args, source)
        try:
            return self._change(target, args, source)
        except ValueError as exc:
            raise OSCError(f"{address} (alias of {target}): {exc}") from None

    def _change(self, address: str, args: tuple, source: str) -> Change | None:
        vals = _scalars(args)
        if vals is None:
            raise OSCError(f"{address}: unsupported or non-finite argument")
        if address.startswith("/cmd/"):
            if address not in COMMANDS:
                raise OSCError(f"unknown command {address}")
            if len(vals) > 1 or (vals and isinstance(vals[0], tuple)):
                raise OSCError(f"{address}: takes at most one argument")
            return Change(address, vals[0] if vals else None, source)
        if address.startswith("/norm/"):
            return self._norm(address[len("/norm"):], vals, source)
        p = self.param(address)
        if p is None and self._index:
            raise OSCError(f"unknown param {address}")
        if not vals:
            value: Value = True                    # a bare address triggers (events, toggles)
        elif len(vals) == 1:
            value = vals[0]
        elif all(_number(v) is not None for v in vals):
            value = tuple(vals)
        else:
            raise OSCError(f"{address}: mixed arguments")
        if p is not None:
            value = p.coerce(value)                # ValueError (an OSCError's parent) says why
        return Change(address, value, source)

    def _norm(self, path: str, vals: list, source: str) -> Change | None:
        p = self.param(path)
        if p is None:
            raise OSCError(f"/norm{path}: unknown param")
        xs = [_number(v) for v in vals]
        if not xs or any(x is None for x in xs):
            raise OSCError(f"/norm{path}: needs numbers in 0..1")
        xs = [min(max(x, 0.0), 1.0) for x in xs]
        if p.kind in NORM_KINDS:
            value: Value = p.denormalise(xs[0])
        elif p.kind == "bool":
            value = xs[0] >= 0.5
        elif p.kind == "event":
            if xs[0] < 0.5:
                return None                        # a button's release: nothing to do
            value = True
        elif p.kind == "point2d":
            if len(xs) != 2:
                raise OSCError(f"/norm{path}: needs 2 numbers")
            value = tuple(p.min + x * (p.max - p.min) for x in xs)
        else:                                      # colour: already 0..1
            value = p.coerce(tuple(xs))
        return Change(path, value, source)


_PATTERN_CHARS = set(" #*,?[]{}")          # OSC reserves these in addresses (patterns, separators)
RESERVED_PREFIXES = ("/cmd/", "/norm/", "/vj/", "/feature/")


def alias_problem(alias: str, target: str, param: Callable[[str], Param | None]) -> str | None:
    """Why `alias` cannot stand for `target` in a preset's [osc.alias] (None when it can).

    The alias must be a plain OSC address that is not a param path (`param(path)` finds declared params) nor
    one of vj's own addresses; the target a param, /norm/ of a param, or a command.
    """
    if (not alias.startswith("/") or alias.endswith("/") or "//" in alias or len(alias) > 128
            or any(c in _PATTERN_CHARS or not c.isprintable() for c in alias)):
        return (f"alias {alias!r} is not a plain OSC address (starts with '/', no spaces or "
                f"{''.join(sorted(_PATTERN_CHARS - {' '}))})")
    if alias.startswith(RESERVED_PREFIXES) or alias in ("/vj/register", "/vj/unregister"):
        return f"alias {alias!r} would shadow vj's own {alias.split('/')[1]!r} addresses"
    if param(alias) is not None:
        return f"alias {alias!r} would shadow the param of that path"
    if not isinstance(target, str):
        return f"alias {alias!r}: the target must be a string (a param path, /norm/<path> or a /cmd/ command)"
    if target.startswith("/cmd/"):
        return None if target in COMMANDS else f"alias {alias!r}: unknown command {target!r}"
    if target.startswith("/norm/"):
        p = param(target[len("/norm"):])
        if p is None:
            return f"alias {alias!r}: unknown param {target[len('/norm'):]!r} in {target!r}"
        if p.kind not in NORM_KINDS:
            return f"alias {alias!r}: {target!r}: a {p.kind} param has no 0..1 range (alias its plain path)"
        return None
    if param(target) is None:
        return f"alias {alias!r}: unknown param {target!r} (a param path, /norm/<path> or a /cmd/ command)"
    return None


# ---- timetags ------------------------------------------------------------------------------------

class Scheduler:
    """Holds Changes from bundles with a future timetag and hands them to `deliver` when they are due."""

    def __init__(self, deliver, max_pending: int = 10000):
        self._deliver = deliver
        self.max_pending = max_pending
        self._heap: list[tuple[float, int, Change]] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="vj-osc-timetags", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return len(self._heap)

    def add(self, due_unix_s: float, change: Change) -> bool:
        with self._cond:
            if len(self._heap) >= self.max_pending:
                return False
            self._seq += 1
            heapq.heappush(self._heap, (due_unix_s, self._seq, change))
            self._cond.notify()
        return True

    def _run(self) -> None:
        while True:
            due: list[Change] = []
            with self._cond:
                if self._stop:
                    return
                if not self._heap:
                    self._cond.wait()
                    continue
                wait_s = self._heap[0][0] - time.time()
                if wait_s > 0:
                    self._cond.wait(wait_s)
                    continue
                while self._heap and self._heap[0][0] <= time.time():
                    due.append(heapq.heappop(self._heap)[2])
            for change in due:
                self._deliver(change)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(2)


# ---- the server ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """Where feedback goes. `norm`: as /norm/<path> 0..1 floats (for faders) instead of plain values."""

    host: str
    port: int
    norm: bool = False


NORM_KINDS = ("float", "int", "enum")   # the numeric kinds a 0..1 fader at /norm/<path> maps across the range


def norm_value(p: Param, value: Value) -> float:
    """A numeric param's value as a 0..1 fader position."""
    return float(min(max(p.normalise(value), 0.0), 1.0))


def _feedback_value(p: Param | None, value: Value, norm: bool) -> Value:
    if not norm or p is None:
        return value
    if p.kind in NORM_KINDS:
        return norm_value(p, value)
    if p.kind in ("bool", "event"):
        return 1.0 if value else 0.0
    if p.kind == "point2d":
        span = p.max - p.min
        return tuple(0.0 if span <= 0 else (float(v) - p.min) / span for v in value)
    return value


class OSCServer:
    """UDP OSC on host:port (127.0.0.1 unless asked). One thread reads and enqueues Changes; another
    sends feedback to static `feedback` targets and to clients that sent /vj/register."""

    def __init__(self, hub: "ControlHub | queue.Queue[Change]", host: str = "127.0.0.1", port: int = 9000,
                 max_queue: int = 10000, *, allow: Iterable[str] = (), feedback: Iterable[tuple[str, int]] = (),
                 feature_hz: float = 30.0, max_ahead_s: float = 600.0):
        # A bare queue (tests, tools) gets a hub of its own with `max_queue`; a shared hub keeps its bound.
        self.hub = hub if isinstance(hub, ControlHub) else ControlHub(hub, max_queue)
        self.changes = self.hub.changes
        self.allow = AllowList(allow)
        self.router = Router(self.hub)
        self.feature_hz = feature_hz
        self.max_ahead_s = max_ahead_s
        # Counters (read from any thread; written by the socket, scheduler and feedback threads).
        self.received = 0           # datagrams (and websocket OSC packets)
        self.messages = 0           # messages in them
        self.rejected = 0           # everything refused: malformed, denied, unknown, bad values, queue full
        self.malformed = 0
        self.denied = 0             # from an address not on the allow-list
        self.dropped = 0            # the change queue was full
        self.scheduled = 0          # messages held for a future timetag
        self.sent = 0               # feedback datagrams sent
        self.send_errors = 0
        self._reported: set[str] = set()
        self._static = []
        for h, p in feedback:
            try:                                 # resolve once: a name looked up per datagram would stall feedback
                self._static.append(Target(socket.gethostbyname(h), int(p)))
            except OSError as exc:
                log.warning("OSC feedback target %s:%s: %s (skipped)", h, p, exc)
        self._out: socket.socket | None = None   # for targets the listening socket cannot reach
        self._via_out: set[str] = set()
        self._dynamic: list[Target] = []
        self._fresh: list[Target] = []           # targets that need the full state on the next feedback pass
        self._targets_lock = threading.Lock()
        self._stop = threading.Event()
        self.scheduler = Scheduler(self._deliver)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            # Bursts from a fader sweep overflow the default socket buffer; 4 MiB holds thousands of datagrams.
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            self.scheduler.close()
            raise OSError(f"cannot listen for OSC on {host}:{port}: {exc.strerror or exc}") from None
        self._sock.settimeout(0.2)               # lets the thread see close() without a wake-up datagram
        self.host, self.port = self._sock.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, name="vj-osc", daemon=True)
        self._feedback_thread = threading.Thread(target=self._feedback, name="vj-osc-feedback", daemon=True)
        self._fresh.extend(self._static)

    def start(self) -> "OSCServer":
        self._thread.start()
        self._feedback_thread.start()
        log.info("OSC listening on udp://%s:%d%s", self.host, self.port,
                 f" (allowed: {', '.join(map(str, self.allow.networks))})" if self.allow else "")
        return self

    @property
    def stats(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("received", "messages", "rejected", "malformed", "denied",
                                                "dropped", "scheduled", "sent", "send_errors")}

    @property
    def targets(self) -> list[Target]:
        with self._targets_lock:
            return self._static + self._dynamic

    # ---- input --------------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue                           # e.g. an ICMP error surfacing on some platforms
            self.handle_packet(data, addr)

    def _report(self, key: str, message: str, level: int = logging.WARNING) -> None:
        if key not in self._reported and len(self._reported) < 64:
            self._reported.add(key)
            log.log(level, "%s", message)

    def _refuse(self, key: str, message: str) -> None:
        self.rejected += 1
        self._report(key, f"OSC: {message} (ignored; further ones are only counted)")

    def handle_packet(self, data: bytes, client: tuple, *, source: str = "osc", can_register: bool = True) -> None:
        """Check and route one packet from `client` (host, port). Never raises."""
        self.received += 1
        try:
            if not self.allow.allows(str(client[0])):
                self.denied += 1
                self._refuse(f"deny:{client[0]}", f"packet from {client[0]}, which is not on the allow-list")
                return
            try:
                messages = parse_packet(data)
            except OSCError as exc:
                self.malformed += 1
                self._refuse("malformed", f"malformed packet from {client[0]}: {exc}")
                return
            now = time.time()
            for m in messages:
                self.messages += 1
                if m.address in ("/vj/register", "/vj/unregister"):
                    if can_register:
                        self._register(m, client)
                    else:
                        self._refuse("register-ws", f"{m.address} only works over UDP")
                    continue
                try:
                    change = self.router.change(m.address, m.args, source)
                except ValueError as exc:          # OSCError, or Param.coerce's reason
                    self._refuse(f"route:{m.address[:80]}", str(exc))
                    continue
                if change is None:
                    continue
                if m.time_s is not None and m.time_s > now + 0.0005:
                    if m.time_s > now + self.max_ahead_s:
                        self._refuse("far", f"{m.address}: timetag more than {self.max_ahead_s:.0f} s ahead")
                    elif self.scheduler.add(m.time_s, change):
                        self.scheduled += 1
                    else:
                        self.dropped += 1
                        self._refuse("sched-full", "too many messages waiting for their timetag")
                    continue
                self._deliver(change)
        except Exception as exc:  # the socket thread must survive anything a packet can do
            self.rejected += 1
            log.exception("OSC: packet from %s crashed its handler: %s", client[0], exc)

    def _deliver(self, change: Change) -> None:
        if not self.hub.send(change.path, change.value, change.source):
            self.dropped += 1
            self._refuse("queue-full", f"change queue full ({self.hub.max_queue}): dropping changes")

    def _register(self, m: Message, client: tuple) -> None:
        vals = _scalars(m.args) or []
        port = next((v for v in vals if isinstance(v, int) and not isinstance(v, bool)), client[1])
        norm = any(isinstance(v, str) and v.lower() == "norm" for v in vals)
        if not 0 < int(port) < 65536:
            self._refuse("register-port", f"{m.address}: port {port} out of range")
            return
        target = Target(str(client[0]), int(port), norm)
        with self._targets_lock:
            self._dynamic = [t for t in self._dynamic if (t.host, t.port) != (target.host, target.port)]
            self._fresh = [t for t in self._fresh if (t.host, t.port) != (target.host, target.port)]
            if m.address == "/vj/register":
                self._dynamic.append(target)
                if len(self._dynamic) > MAX_DYNAMIC_TARGETS:
                    self._dynamic.pop(0)
                self._fresh.append(target)
        log.info("OSC feedback %s %s:%d%s", "to" if m.address == "/vj/register" else "no longer to",
                 target.host, target.port, " (normalised)" if norm else "")

    # ---- feedback -----------------------------------------------------------------------------

    def _send(self, packets: list[tuple[str, Value, Param | None]], targets: Iterable[Target]) -> None:
        for t in targets:
            for address, value, p in packets:
                try:
                    v = _feedback_value(p, value, t.norm)
                    addr = f"/norm{address}" if t.norm and p is not None else address
                    self._sendto(encode_message(addr, v), (t.host, t.port))
                    self.sent += 1
                except (OSError, ValueError, TypeError) as exc:
                    self.send_errors += 1
                    self._report(f"send:{t.host}:{t.port}", f"OSC feedback to {t.host}:{t.port}: {exc}")
                    break

    def _sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        """From the OSC port (controllers often accept feedback only from there); a socket bound to
        127.0.0.1 cannot reach another host, so those targets get a socket of their own."""
        if addr[0] not in self._via_out:
            try:
                self._sock.sendto(data, addr)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._via_out.add(addr[0])
        if self._out is None:
            self._out = socket.socket(self._sock.family, socket.SOCK_DGRAM)
        self._out.sendto(data, addr)

    @staticmethod
    def _value_packets(snap: ControlSnapshot, values: Mapping[str, Value]) -> list:
        index = {p.path: p for p in snap.params}
        out = []
        for path, v in values.items():
            p = index.get(path)
            if p is not None and p.kind == "event":
                continue                          # pulses: true for one frame, nothing for a fader to follow
            out.append((path, v, p))
        return out

    @staticmethod
    def _alias_packets(snap: ControlSnapshot, values: Mapping[str, Value]) -> list:
        """Aliased targets among `values` again at their alias addresses (so a TouchOSC fader follows them), in
        the alias's terms: 0..1 for a /norm/ target, the value as it is for a plain one."""
        if not snap.aliases:
            return []
        index = {p.path: p for p in snap.params}
        out = []
        for alias, target in snap.aliases.items():
            norm = target.startswith("/norm/")
            path = target[len("/norm"):] if norm else target
            p = index.get(path)
            if path not in values or p is None or p.kind == "event":
                continue
            out.append((alias, _feedback_value(p, values[path], True) if norm else values[path], None))
        return out

    def _feedback(self) -> None:
        version = -1
        aliases: dict[str, str] = {}
        sent: dict[str, Value] = {}
        preset = None
        features: dict[str, float] = {}
        frame = -1
        phase = 0.0
        beat_high = False
        period_s = 1.0 / max(self.feature_hz, 1.0)
        next_features = time.monotonic()
        while not self._stop.is_set():
            snap = self.hub.wait_newer(version, max(0.0, next_features - time.monotonic()))
            if self._stop.is_set():
                return
            with self._targets_lock:
                targets = self._static + self._dynamic
                fresh, self._fresh = self._fresh, []
            if snap.version != version:
                version = snap.version
                changed = {k: v for k, v in snap.values.items() if k not in sent or sent[k] != v}
                sent = dict(snap.values)
                others = [t for t in targets if t not in fresh]
                # A new preset's aliases: send every aliased value, so the controller shows the new scene.
                alias_values = changed if dict(snap.aliases) == aliases else snap.values
                aliases = dict(snap.aliases)
                packets = self._value_packets(snap, changed) + self._alias_packets(snap, alias_values)
                if others and packets:
                    self._send(packets, others)
                if snap.preset != preset and others:
                    self._send([("/vj/preset", snap.preset, None)], others)
                preset = snap.preset
            if fresh and snap.params:
                self._send(self._value_packets(snap, snap.values) + self._alias_packets(snap, snap.values)
                           + [("/vj/preset", snap.preset, None)], fresh)
                features.clear()                  # and every feature on the next pass
            elif fresh:
                with self._targets_lock:          # nothing published yet: try again next pass
                    self._fresh.extend(fresh)
            now = time.monotonic()
            if now < next_features:
                continue
            next_features = max(next_features + period_s, now)
            if snap.frame == frame or not snap.features or not targets:
                if beat_high and targets:         # end the pulse even when no frame follows it
                    self._send([("/feature/beat", 0.0, None)], targets)
                beat_high = False
                continue
            frame = snap.frame
            out = []
            # A one-frame beat can fall between two feature passes; the phase wrapping round catches it.
            new_phase = float(snap.features.get("beat_phase", 0.0))
            beat = snap.features.get("beat", 0.0) > 0.5 or new_phase < phase - 0.5
            phase = new_phase
            if beat or beat_high:
                out.append(("/feature/beat", 1.0 if beat else 0.0, None))
                beat_high = beat
            for key in FEATURE_KEYS:
                v = float(snap.features.get(key, 0.0))
                if key != "beat" and features.get(key) != v and math.isfinite(v):
                    features[key] = v
                    out.append((f"/feature/{key}", v, None))
            if out and targets:
                self._send(out, targets)          # features go as plain floats to every target

    def close(self) -> None:
        self._stop.set()
        for t in (self._thread, self._feedback_thread):
            if t.is_alive():
                t.join(2)
        self.scheduler.close()
        self._sock.close()
        if self._out is not None:
            self._out.close()
