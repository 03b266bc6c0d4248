"""The web control page (sliders, toggles, colours, presets, tap, BPM, beat, preview) and the function
that starts every control server the show asks for.

The page (vj/control/web/) is static; it builds its controls from the registry snapshot the server sends
over a websocket at /ws:
  server -> page  {"type": "schema", "params": [...], "commands": [...], "presets": [...], "preset": ...}
                  {"type": "values", "values": {path: value}}   (all on connect, then what changed)
                  {"type": "features", "features": {...}, "preset": ...}   (feedback_hz, when a frame passed)
  page -> server  {"path": "/fx/kaleidoscope/sides", "value": 8}  or  {"path": "/cmd/tap"}
Changes go through the same Router as OSC (paths, kinds and ranges checked at the door) onto the hub.
GET /preview answers the show's `preview()` bytes (PNG or JPEG); 204 when there is none.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterable

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from vj.config import ControlConfig
from vj.control.osc import OSCServer, Router
from vj.control.oscquery import HOST_HEADER, HTTPWSServer, OSCQueryServer, dumps, json_safe, loads, response
from vj.control.state import COMMANDS, ControlHub, ControlSnapshot
from vj.params import Change

log = logging.getLogger(__name__)

STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/style.css": ("style.css", "text/css; charset=utf-8")}


def _load_static() -> dict[str, bytes]:
    folder = resources.files("vj.control") / "web"
    return {name: (folder / name).read_bytes() for name, _ in set(STATIC.values())}


def _image_type(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    return None


def schema(snap: ControlSnapshot, preview: bool) -> dict:
    params = [{"path": p.path, "kind": p.kind, "min": p.min, "max": p.max, "default": json_safe(p.default),
               "unit": p.unit, "description": p.description, "labels": list(p.labels)} for p in snap.params]
    commands = [{"path": path, "args": args, "description": desc} for path, (args, desc) in COMMANDS.items()]
    return {"type": "schema", "params": params, "commands": commands, "presets": list(snap.presets),
            "preset": snap.preset, "preview": preview}


class WebServer(HTTPWSServer):
    """The control page on host:port (default 127.0.0.1:8080), updated live over a websocket."""

    name = "web"
    ws_paths = ("/ws",)

    def __init__(self, hub: ControlHub, host: str = "127.0.0.1", port: int = 8080, *,
                 preview: Callable[[], bytes | None] | None = None, allow: Iterable[str] = (),
                 feature_hz: float = 30.0):
        super().__init__(hub, host, port, allow=allow)
        self.preview = preview
        self.feature_hz = feature_hz
        self.router = Router(hub)
        self.received = 0
        self.rejected = 0
        self.dropped = 0
        self._static = _load_static()

    async def get(self, path: str, query: str, request: Request) -> Response:
        if path in STATIC:
            name, ctype = STATIC[path]
            host = request.headers.get("Host", "")
            ws = f" ws://{host} wss://{host}" if HOST_HEADER.match(host) else ""
            csp = (f"default-src 'self'; connect-src 'self'{ws}; img-src 'self' data: blob:; "
                   "style-src 'self'; script-src 'self'; frame-ancestors 'none'")
            return response(200, self._static[name], ctype, [("Content-Security-Policy", csp)])
        if path == "/preview":
            if self.preview is None:
                return response(204)
            try:
                data = await asyncio.to_thread(self.preview)
            except Exception as exc:  # the show's callable failing must not break the page
                log.warning("web: preview failed: %s", exc)
                data = None
            kind = _image_type(data) if data else None
            return response(200, data, kind) if kind else response(204)
        return response(404, "not found\n")

    def _change(self, msg: str | bytes) -> Change | None:
        """A control message from the page -> a Change; ValueError when it is refused."""
        if isinstance(msg, bytes):
            raise ValueError("binary frames are not control messages")
        obj = loads(msg)
        if not isinstance(obj, dict) or not isinstance(obj.get("path"), str) or len(obj["path"]) > 256:
            raise ValueError("expected {\"path\": ..., \"value\": ...}")
        value = obj.get("value")
        if value is None:
            args: tuple = ()
        elif isinstance(value, list) and len(value) <= 4:
            args = tuple(value)
        elif isinstance(value, (bool, int, float, str)):
            args = (value,)
        else:
            raise ValueError("unsupported value")
        return self.router.change(obj["path"], args, "web")

    async def session(self, conn: ServerConnection) -> None:
        snap = self.hub.snapshot
        await conn.send(dumps(schema(snap, self.preview is not None)))
        await conn.send(dumps({"type": "values", "values": {k: json_safe(v) for k, v in snap.values.items()}}))
        async for msg in conn:
            self.received += 1
            try:
                change = self._change(msg)
            except ValueError as exc:
                self.rejected += 1
                log.debug("web: refused %r: %s", msg[:80], exc)
                continue
            if change is not None and not self.hub.send(change.path, change.value, change.source):
                self.dropped += 1

    async def background(self) -> None:
        version = -1
        values: dict[str, Any] = {}
        params: tuple | None = None
        presets: tuple | None = None
        frame = -1
        period_s = 1.0 / max(self.feature_hz, 1.0)
        while True:
            snap = await self.newer(version, period_s)
            if snap.version != version:
                version = snap.version
                if params is not None and (snap.params != params or snap.presets != presets):
                    self.push(self.clients, dumps(schema(snap, self.preview is not None)))
                params, presets = snap.params, snap.presets
                changed = {k: json_safe(v) for k, v in snap.values.items() if k not in values or values[k] != v}
                values = dict(snap.values)
                if changed:
                    self.push(self.clients, dumps({"type": "values", "values": changed}))
            if snap.frame != frame and snap.features:
                frame = snap.frame
                feats = {k: json_safe(float(v)) for k, v in snap.features.items()}
                self.push(self.clients, dumps({"type": "features", "features": feats, "preset": snap.preset,
                                               "frame": snap.frame}))


# ---- every control server at once ---------------------------------------------------------------

@dataclass
class ControlServers:
    """The control servers a show runs; `close()` stops them all."""

    osc: OSCServer | None = None
    oscquery: OSCQueryServer | None = None
    web: WebServer | None = None

    def urls(self) -> list[str]:
        out = []
        if self.osc is not None:
            out.append(f"osc.udp://{self.osc.host}:{self.osc.port}")
        if self.oscquery is not None:
            out.append(f"oscquery http://{self.oscquery.host}:{self.oscquery.port}/")
        if self.web is not None:
            out.append(f"web page http://{self.web.host}:{self.web.port}/")
        return out

    def close(self) -> None:
        for s in (self.web, self.oscquery, self.osc):
            if s is not None:
                s.close()


def start_control_servers(hub: ControlHub, cfg: ControlConfig,
                          preview: Callable[[], bytes | None] | None = None) -> ControlServers:
    """Start OSC (cfg.osc_port), OSCQuery (cfg.oscquery_port, only with OSC on) and the web page (cfg.web),
    all on cfg.osc_host with cfg.osc_allow. OSError (port taken, bad address) after closing what started.

    `preview` is called on the web server's thread: it must be cheap and thread-safe (return the newest
    encoded frame the main thread left behind, or None).
    """
    servers = ControlServers()
    try:
        if cfg.osc_port:
            servers.osc = OSCServer(hub, cfg.osc_host, cfg.osc_port, allow=cfg.osc_allow,
                                    feedback=cfg.osc_feedback, feature_hz=cfg.feedback_hz).start()
            if cfg.oscquery_port:
                servers.oscquery = OSCQueryServer(hub, cfg.osc_host, cfg.oscquery_port, osc=servers.osc,
                                                  allow=cfg.osc_allow, mdns=cfg.mdns,
                                                  feature_hz=cfg.feedback_hz).start()
        if cfg.web:
            servers.web = WebServer(hub, cfg.osc_host, cfg.web_port, preview=preview, allow=cfg.osc_allow,
                                    feature_hz=cfg.feedback_hz).start()
    except BaseException:
        servers.close()
        raise
    return servers
