"""OSCQuery (the Vidvox proposal) over HTTP + WebSocket on one port, and its zeroconf advertisement.

GET /             the whole namespace as JSON (FULL_PATH, CONTENTS, TYPE, VALUE, RANGE, ACCESS, ...)
GET /a/b          the subtree or node at /a/b; GET /a/b?VALUE one attribute ({"VALUE": [...]})
GET /?HOST_INFO   NAME, OSC_PORT, OSC_TRANSPORT, EXTENSIONS (LISTEN, PATH_ADDED, PATH_REMOVED, ...)
WebSocket         {"COMMAND": "LISTEN"|"IGNORE", "DATA": "/a/b"}; updates come back as binary OSC messages;
                  a text frame holding a path returns that node; binary OSC frames set values like UDP.

The namespace is the registry's params, their 0..1 twins /norm/<path> for every numeric param (for faders
that only speak 0..1; the same addresses the OSC server takes), the /cmd/ commands (write-only), the features under /feature/
(read-only) and /vj/preset (read-only). The HTTP + WebSocket plumbing (HTTPWSServer) is shared with the
web control page.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import json
import logging
import math
import re
import socket
import threading
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from vj.control.osc import NORM_KINDS, AllowList, OSCServer, encode_message, norm_value
from vj.control.state import COMMANDS, FEATURE_KEYS, ControlHub, ControlSnapshot
from vj.params import Param, Value

log = logging.getLogger(__name__)

MAX_WS_MESSAGE = 1 << 16            # bytes; a control message is a few dozen
MAX_LISTENS = 4096                  # paths one websocket client may listen to
SLOW_CLIENT_BYTES = 1 << 20         # a client this far behind misses updates instead of growing our memory
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "VALUE", "RANGE", "ACCESS", "DESCRIPTION", "UNIT", "CLIPMODE",
              "TAGS", "EXTENDED_TYPE", "CRITICAL", "HOST_INFO")
HOST_HEADER = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,255}$")


def json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (tuple, list)):
        return [json_safe(x) for x in v]
    return v


def dumps(obj: Any) -> str:
    return json.dumps(obj, allow_nan=False, separators=(",", ":"))


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number vj accepts")


def loads(text: str | bytes) -> Any:
    """JSON from a client: NaN and Infinity are refused (ValueError) like any other malformed input."""
    return json.loads(text, parse_constant=_refuse_constant)


def response(status: int, body: bytes | str = b"", content_type: str = "text/plain; charset=utf-8",
             headers: Iterable[tuple[str, str]] = ()) -> Response:
    if isinstance(body, str):
        body = body.encode("utf-8")
    h = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
                 ("X-Content-Type-Options", "nosniff"), ("Connection", "close"), *headers])
    return Response(status, http.HTTPStatus(status).phrase, h, body)


def host_header_ok(value: str) -> bool:
    """A Host header naming this machine: an IP address, localhost, or its host name (.local)."""
    if not HOST_HEADER.match(value):
        return False
    name = urlsplit(f"//{value}").hostname or ""
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    own = socket.gethostname().lower()
    return name in ("localhost", own, own.split(".")[0], own.split(".")[0] + ".local")


class HTTPWSServer:
    """An asyncio HTTP + WebSocket server on its own thread (websockets answers plain GETs in process_request).

    Subclasses implement `get` (HTTP), `session` (one websocket) and `background` (a task for pushes).
    """

    name = "http"
    ws_paths: tuple[str, ...] | None = None        # websocket only on these paths; None: any
    cors = False                                   # Access-Control-Allow-Origin: * on GET answers

    def __init__(self, hub: ControlHub, host: str = "127.0.0.1", port: int = 0, *, allow: Iterable[str] = ()):
        self.hub = hub
        self.host = host
        self.port = port
        self.allow = AllowList(allow)
        self.requests = 0
        self.denied = 0
        self.clients: set[ServerConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"vj-{self.name}", daemon=True)

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self):
        self._thread.start()
        self._ready.wait(15)
        if self._error is not None:
            raise self._error
        if not self._ready.is_set():
            raise OSError(f"{self.name} server on {self.host}:{self.port} did not start")
        log.info("%s on http://%s:%d/", self.name, self.host, self.port)
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as exc:  # the server thread's boundary: log, never take the show down
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.exception("%s server stopped: %s", self.name, exc)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        ws_log = logging.getLogger(f"vj.{self.name}.ws")
        if ws_log.level == logging.NOTSET:
            ws_log.setLevel(logging.WARNING)     # websockets logs every HTTP answer at INFO
        try:
            server = await serve(self._session, self.host, self.port, process_request=self._process_request,
                                 max_size=MAX_WS_MESSAGE, compression=None, ping_interval=10, ping_timeout=10,
                                 open_timeout=5, close_timeout=1, logger=ws_log)
        except OSError as exc:
            self._error = OSError(f"cannot listen for {self.name} on {self.host}:{self.port}: {exc.strerror or exc}")
            self._ready.set()
            return
        async with server:
            self.port = server.sockets[0].getsockname()[1]
            task = asyncio.create_task(self._background())
            self._ready.set()
            await self._stop.wait()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _background(self) -> None:
        try:
            await self.background()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in a push loop must not stop the HTTP side
            log.exception("%s: background task failed", self.name)

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            self._thread.join(5)

    # ---- HTTP -----------------------------------------------------------------------------------

    async def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        host = str(conn.remote_address[0]) if conn.remote_address else ""
        if not self.allow.allows(host):
            self.denied += 1
            return response(403, "not on the allow-list\n")
        if not host_header_ok(request.headers.get("Host", "")):
            # DNS rebinding: a site whose name now points at this machine is still another site.
            self.denied += 1
            return response(403, "unknown host name\n")
        if request.headers.get("Upgrade", "").lower() == "websocket":
            origin = request.headers.get("Origin")
            # A page on another site must not drive the show through the visitor's browser.
            if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("Host", "").lower():
                self.denied += 1
                return response(403, "cross-origin websocket refused\n")
            if self.ws_paths is not None and urlsplit(request.path).path not in self.ws_paths:
                return response(404, "no websocket here\n")
            return None
        self.requests += 1
        split = urlsplit(request.path)
        try:
            res = await self.get(unquote(split.path), split.query, request)
        except Exception:  # one bad request answers 500; the server goes on
            log.exception("%s: GET %s failed", self.name, request.path)
            res = response(500, "internal error\n")
        if self.cors:
            res.headers["Access-Control-Allow-Origin"] = "*"
        return res

    async def get(self, path: str, query: str, request: Request) -> Response:
        return response(404, "not found\n")

    # ---- WebSocket ----------------------------------------------------------------------------

    async def _session(self, conn: ServerConnection) -> None:
        self.clients.add(conn)
        try:
            await self.session(conn)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(conn)

    async def session(self, conn: ServerConnection) -> None:
        async for _ in conn:
            pass

    async def background(self) -> None:
        await asyncio.Event().wait()

    def push(self, conns: Iterable[ServerConnection], message: str | bytes) -> None:
        """Send without waiting; a client that stopped reading misses updates instead of piling them up."""
        ok = [c for c in conns if c.transport is not None and c.transport.get_write_buffer_size() < SLOW_CLIENT_BYTES]
        if ok:
            broadcast(ok, message)

    async def newer(self, version: int, timeout_s: float) -> ControlSnapshot:
        """hub.wait_newer without blocking the event loop."""
        return await asyncio.to_thread(self.hub.wait_newer, version, timeout_s)


# ---- the namespace -------------------------------------------------------------------------------

def _rgba_hex(value) -> str:
    return "#" + "".join(f"{int(round(min(max(float(v), 0.0), 1.0) * 255)):02x}" for v in tuple(value)[:4])


def param_node(p: Param, value: Value) -> dict:
    """One OSCQuery method node for a param: its type, current value, range, clip mode and unit."""
    n: dict[str, Any] = {"FULL_PATH": p.path, "DESCRIPTION": p.description or p.path.rsplit("/", 1)[-1],
                         "ACCESS": 3}
    k = p.kind
    count = 1
    if k == "float":
        n.update(TYPE="f", VALUE=[float(value)], RANGE=[{"MIN": p.min, "MAX": p.max}], CLIPMODE=["both"])
    elif k in ("int", "enum"):
        rng: dict[str, Any] = {"MIN": int(p.min), "MAX": int(p.max)}
        if k == "enum":
            rng["VALS"] = list(range(int(p.min), int(p.max) + 1))
            if p.labels:
                n["DESCRIPTION"] += " (" + ", ".join(f"{int(p.min) + i} = {lab}" for i, lab in enumerate(p.labels)) + ")"
        n.update(TYPE="i", VALUE=[int(value)], RANGE=[rng], CLIPMODE=["both"])
    elif k == "bool":
        n.update(TYPE="T", VALUE=[bool(value)])
    elif k == "event":
        n.update(TYPE="N", ACCESS=2)
        count = 0
    elif k == "color":
        n.update(TYPE="r", VALUE=[_rgba_hex(value)])
    elif k == "point2d":
        n.update(TYPE="ff", VALUE=[float(v) for v in value], RANGE=[{"MIN": p.min, "MAX": p.max}] * 2,
                 CLIPMODE=["both"] * 2)
        count = 2
    if p.unit and count:
        n["UNIT"] = [p.unit] * count
    return n


def norm_node(p: Param, value: Value) -> dict:
    """The /norm/<path> twin of a numeric param's node: a float fader 0..1 across the param's range."""
    return {"FULL_PATH": "/norm" + p.path, "TYPE": "f", "ACCESS": 3, "VALUE": [norm_value(p, value)],
            "RANGE": [{"MIN": 0.0, "MAX": 1.0}], "CLIPMODE": ["both"],
            "DESCRIPTION": f"{p.path} as 0..1 across {p.min:g}..{p.max:g}" + (f" {p.unit}" if p.unit else "")}


def norm_paths(params: Iterable[Param]) -> dict[str, Param]:
    """/norm/<path> -> param, for every numeric param."""
    return {"/norm" + p.path: p for p in params if p.kind in NORM_KINDS}


def _command_node(path: str, args: str, description: str, presets: tuple[str, ...]) -> dict:
    n: dict[str, Any] = {"FULL_PATH": path, "DESCRIPTION": description, "ACCESS": 2}
    if not args:
        n["TYPE"] = "N"
    elif "bool" in args:
        n["TYPE"] = "T"
    else:
        n["TYPE"] = "s"
        if path == "/cmd/preset/load":
            n["RANGE"] = [{"VALS": list(presets)}]
    return n


def leaf_nodes(snap: ControlSnapshot) -> dict[str, dict]:
    """path -> method node for everything in the namespace."""
    out = {p.path: param_node(p, snap.values.get(p.path, p.default)) for p in snap.params}
    for path, p in norm_paths(snap.params).items():
        out[path] = norm_node(p, snap.values.get(p.path, p.default))
    for path, (args, description) in COMMANDS.items():
        out[path] = _command_node(path, args, description, snap.presets)
    for key in FEATURE_KEYS:
        out[f"/feature/{key}"] = {"FULL_PATH": f"/feature/{key}", "TYPE": "f", "ACCESS": 1,
                                  "VALUE": [json_safe(float(snap.features.get(key, 0.0)))],
                                  "DESCRIPTION": f"audio feature: {key}"}
    out["/vj/preset"] = {"FULL_PATH": "/vj/preset", "TYPE": "s", "ACCESS": 1, "VALUE": [snap.preset],
                         "RANGE": [{"VALS": list(snap.presets)}], "DESCRIPTION": "the active preset"}
    return out


def namespace(snap: ControlSnapshot, name: str = "vj") -> dict:
    """The whole address space as one OSCQuery JSON tree."""
    root: dict[str, Any] = {"FULL_PATH": "/", "ACCESS": 0, "DESCRIPTION": name, "CONTENTS": {}}
    for path, leaf in sorted(leaf_nodes(snap).items()):
        node = root
        parts = path.strip("/").split("/")
        for i, part in enumerate(parts):
            contents = node.setdefault("CONTENTS", {})
            if part not in contents:
                contents[part] = {"FULL_PATH": "/" + "/".join(parts[:i + 1]), "ACCESS": 0, "DESCRIPTION": ""}
            node = contents[part]
        node.update({k: v for k, v in leaf.items()})
    return root


def find_node(tree: dict, path: str) -> dict | None:
    node = tree
    for part in [p for p in path.split("/") if p]:
        node = node.get("CONTENTS", {}).get(part)
        if node is None:
            return None
    return node


# ---- the server ----------------------------------------------------------------------------------

class OSCQueryServer(HTTPWSServer):
    """OSCQuery for the registry on host:port; LISTEN updates pushed as binary OSC over the websocket."""

    name = "oscquery"
    cors = True

    def __init__(self, hub: ControlHub, host: str = "127.0.0.1", port: int = 9001, *, osc: OSCServer | None = None,
                 allow: Iterable[str] = (), mdns: bool = True, feature_hz: float = 30.0, service_name: str = "vj"):
        super().__init__(hub, host, port, allow=allow)
        self.osc = osc
        self.feature_hz = feature_hz
        self.service_name = service_name
        self.mdns = mdns
        self.advertiser: Advertiser | None = None
        self.listens: dict[ServerConnection, set[str]] = {}
        self.refused = 0

    def start(self) -> "OSCQueryServer":
        super().start()
        if self.mdns:
            self.advertiser = Advertiser(self.service_name, self.host, self.port,
                                         self.osc.port if self.osc is not None else 0).start()
        return self

    def close(self) -> None:
        if self.advertiser is not None:
            self.advertiser.close()
        super().close()

    def host_info(self) -> dict:
        info: dict[str, Any] = {
            "NAME": self.service_name,
            "EXTENSIONS": {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
                           "EXTENDED_TYPE": False, "UNIT": True, "CRITICAL": False, "CLIPMODE": True,
                           "LISTEN": True, "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": True,
                           "PATH_REMOVED": True, "HTML": False},
        }
        if self.osc is not None:
            info.update(OSC_PORT=self.osc.port, OSC_TRANSPORT="UDP")
            if self.osc.host not in ("0.0.0.0", "::", ""):
                info["OSC_IP"] = self.osc.host
        return info

    async def get(self, path: str, query: str, request: Request) -> Response:
        attr = query.split("&", 1)[0].split("=", 1)[0] if query else ""
        if attr == "HOST_INFO":
            return response(200, dumps(self.host_info()), "application/json")
        if attr and attr not in ATTRIBUTES:
            return response(400, f"unknown attribute {attr[:64]}\n")
        node = find_node(namespace(self.hub.snapshot, self.service_name), path)
        if node is None:
            return response(404, "no such node\n")
        if not attr:
            return response(200, dumps(node), "application/json")
        if attr not in node:
            return response(204)
        return response(200, dumps({attr: node[attr]}), "application/json")

    async def session(self, conn: ServerConnection) -> None:
        listens = self.listens.setdefault(conn, set())
        try:
            async for msg in conn:
                if isinstance(msg, bytes):
                    if self.osc is None:
                        self.refused += 1
                        continue
                    addr = conn.remote_address or ("", 0)
                    self.osc.handle_packet(msg, addr, source="oscquery", can_register=False)
                    continue
                try:
                    obj = loads(msg)
                except ValueError:
                    obj = None
                if obj is None and msg.startswith("/"):            # a path alone asks for that node
                    node = find_node(namespace(self.hub.snapshot, self.service_name), msg.strip())
                    if node is not None:
                        await conn.send(dumps(node))
                    continue
                if not isinstance(obj, dict) or not isinstance(obj.get("DATA"), str):
                    self.refused += 1
                    continue
                command, path = obj.get("COMMAND"), obj["DATA"]
                if command == "LISTEN" and len(listens) < MAX_LISTENS and path.startswith("/"):
                    listens.add(path)
                elif command == "IGNORE":
                    listens.discard(path)
                else:
                    self.refused += 1
        finally:
            self.listens.pop(conn, None)

    async def background(self) -> None:
        version = frame = -1
        values: dict[str, Value] = {}
        features: dict[str, float] = {}
        preset: str | None = None
        params: tuple | None = None
        paths: frozenset[str] | None = None
        norms: dict[str, Param] = {}
        period_s = 1.0 / max(self.feature_hz, 1.0)
        while True:
            snap = await self.newer(version, period_s)
            if snap.version == version and snap.frame == frame:
                continue
            changed: dict[str, Value] = {}
            if snap.version != version:
                version = snap.version
                if snap.params is not params:
                    params = snap.params
                    norms = norm_paths(params)
                    now = frozenset(p.path for p in params) | norms.keys()
                    if paths is not None:
                        for p in sorted(now - paths):
                            self.push(self.clients, dumps({"COMMAND": "PATH_ADDED", "DATA": p}))
                        for p in sorted(paths - now):
                            self.push(self.clients, dumps({"COMMAND": "PATH_REMOVED", "DATA": p}))
                    paths = now
                changed.update({k: v for k, v in snap.values.items() if k not in values or values[k] != v})
                for path, p in norms.items():
                    if p.path in changed:
                        changed[path] = norm_value(p, changed[p.path])
                values = dict(snap.values)
                if snap.preset != preset:
                    preset = changed["/vj/preset"] = snap.preset
            if snap.frame != frame:
                frame = snap.frame
                for key in FEATURE_KEYS:
                    v = float(snap.features.get(key, 0.0))
                    if features.get(key) != v and math.isfinite(v):
                        features[key] = changed[f"/feature/{key}"] = v
            if not changed:
                continue
            packets: dict[str, bytes] = {}
            for conn, listening in list(self.listens.items()):
                for p in listening & changed.keys():
                    if p not in packets:
                        packets[p] = encode_message(p, changed[p])
                    self.push([conn], packets[p])


# ---- zeroconf ------------------------------------------------------------------------------------

def advertised_addresses(host: str) -> list[str]:
    """The IPv4 addresses to advertise for a listen address: itself, or every interface's for 0.0.0.0."""
    if host not in ("0.0.0.0", "", "::"):
        try:
            return [socket.gethostbyname(host)]
        except OSError:
            return []
    try:
        import ifaddr  # zeroconf's own dependency
        addrs = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips
                 if isinstance(ip.ip, str) and not ip.ip.startswith("127.")]
    except (ImportError, OSError):
        addrs = []
    return addrs or ["127.0.0.1"]


class Advertiser:
    """Announces _oscjson._tcp (OSCQuery) and _osc._udp (OSC) over mDNS. Registration runs on its own
    thread (probing takes a second or two); any failure, e.g. no multicast, only logs a warning."""

    def __init__(self, name: str, host: str, http_port: int, osc_port: int = 0):
        self.name = name
        self.host = host
        self.http_port = http_port
        self.osc_port = osc_port
        self.registered: list[str] = []          # service names as announced (zeroconf may rename on conflict)
        self.error: str | None = None
        self._zc = None
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._register, name="vj-mdns", daemon=True)

    def start(self) -> "Advertiser":
        self._thread.start()
        return self

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _register(self) -> None:
        try:
            from zeroconf import InterfaceChoice, IPVersion, ServiceInfo, Zeroconf

            addrs = advertised_addresses(self.host)
            if not addrs:
                raise OSError(f"no address to advertise for {self.host}")
            # Announce where clients can connect: a server on 127.0.0.1 only to this machine (a LAN
            # controller could do nothing with that address), one on a given address on that interface.
            wide = self.host in ("0.0.0.0", "", "::")
            interfaces = InterfaceChoice.All if wide else addrs
            hostname = socket.gethostname().split(".")[0] or "vj"
            label = f"{self.name} on {hostname}"[:63]
            services = [("_oscjson._tcp.local.", self.http_port)]
            if self.osc_port:
                services.append(("_osc._udp.local.", self.osc_port))
            with self._lock:
                if self._closed:
                    return
                self._zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
            for kind, port in services:
                info = ServiceInfo(kind, f"{label}.{kind}", port=port, parsed_addresses=addrs,
                                   server=f"{hostname}.local.", properties={"app": "vj"})
                self._zc.register_service(info, allow_name_change=True)
                self.registered.append(info.name)
            log.info("mDNS: advertising %s", ", ".join(self.registered))
        except Exception as exc:  # no multicast, no interface, a name clash: discovery is a convenience
            self.error = f"{type(exc).__name__}: {exc}"
            log.warning("mDNS: could not advertise OSCQuery (%s); connect by address instead", self.error)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._thread.join(10)
        if self._zc is not None:
            try:
                self._zc.unregister_all_services()
                self._zc.close()
            except Exception as exc:  # shutting down: nothing more to do than say so
                log.warning("mDNS: %s while closing", exc)
            self._zc = None
