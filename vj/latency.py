"""`vj bench latency`: audio-to-light latency, measured click by click through a real audio server.

A click player and the live show share one audio server (JACK's dummy driver by default, or a PulseAudio
null sink). The player's output is wired to the show's input; the show runs its normal frame loop on a
flash scene, and a probe reads a patch of every drawn frame just before the swap. For each click:

    sound       when the click's first sample would have hit the converter: its block's arrival time,
                minus the samples after it in that block, minus the input latency the stream reports
    arrival     the audio callback that delivered the block (the ring's arrival log)
    read        the first frame whose audio read included the click
    flash       the first frame whose probe crossed half-way from the dark level to the flash level
    swap        when that frame's swap returned

latency = swap - sound, split into audio buffering (arrival - sound), wait for frame (read - arrival),
analysis hop (extra frames until the flash, from hops not yet complete or the analyser's attack), render
(read -> drawn, of the flash frame) and swap (drawn -> swap returned, with the probe's read-back). The
same split is what the live HUD estimates from its own timings (vj.timing); both are printed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from vj.audio.clicks import ClickPlayer
from vj.audio.servers import AudioServerError, JackServer, PulseServer
from vj.audio.sources import AudioDeviceError, portaudio_released, rescan_devices
from vj.config import AudioConfig, ControlConfig, RenderConfig
from vj.timing import PARTS, FrameRecord

log = logging.getLogger(__name__)

TARGET_P95_MS = 45.0
PROBE_PX = 16
MAX_FLASH_WAIT_S = 0.3           # a flash later than this is counted as missed


@dataclass
class ClickLatency:
    sample: int                  # stream index of the click's first sample
    latency_ms: float
    parts_ms: dict[str, float]


@dataclass
class LatencyReport:
    server: str
    clicks: int                                  # clicks played
    measured: list[ClickLatency] = field(default_factory=list)
    estimate_ms: dict[str, float] = field(default_factory=dict)   # the HUD's split at the end of the run
    model_path_ms: float = 0.0
    display_fps: float = 0.0
    preset: str = ""
    size: tuple[int, int] = (0, 0)
    block_frames: int = 0

    @property
    def latencies_ms(self) -> np.ndarray:
        return np.array([c.latency_ms for c in self.measured])

    def percentile(self, q: float) -> float:
        lat = self.latencies_ms
        return float(np.percentile(lat, q)) if len(lat) else float("nan")

    def part_mean_ms(self, part: str) -> float:
        return float(np.mean([c.parts_ms[part] for c in self.measured])) if self.measured else float("nan")

    def lines(self) -> list[str]:
        lat = self.latencies_ms
        est_total = sum(self.estimate_ms.values()) if self.estimate_ms else float("nan")
        out = [f"vj bench latency: {self.clicks} clicks through {self.server}, block {self.block_frames} frames, "
               f"preset {self.preset}, {self.size[0]}x{self.size[1]}",
               f"  detected {len(lat)}/{self.clicks} clicks; display {self.display_fps:.1f} fps"]
        if len(lat):
            verdict = "meets" if self.percentile(95) <= TARGET_P95_MS else "misses"
            out.append(f"  audio-to-frame latency  p50 {self.percentile(50):5.1f} ms  p95 {self.percentile(95):5.1f} ms"
                       f"  max {float(lat.max()):5.1f} ms   ({verdict} the p95 <= {TARGET_P95_MS:.0f} ms target)")
            out.append(f"  measured, mean          {float(lat.mean()):5.1f} ms = " + " · ".join(
                f"{p} {self.part_mean_ms(p):.1f}" for p in PARTS) + " ms")
        if self.estimate_ms:
            out.append(f"  HUD estimate            {est_total:5.1f} ms = " + " · ".join(
                f"{p} {self.estimate_ms[p]:.1f}" for p in PARTS) + " ms")
        out.append(f"  model path              +{self.model_path_ms:.0f} ms for visuals that change through the model "
                   "(half a model frame + its render; the flash goes through shader params)")
        return out


def _ports(server) -> set[str]:
    return set(server.ports()) if isinstance(server, JackServer) else set()


def _start_server(kind: str, audio_cfg: AudioConfig, stack: contextlib.ExitStack):
    if kind == "jack":
        server = JackServer(audio_cfg.sample_rate_hz, audio_cfg.block_frames)
        server.start()
        if server.started_here:
            # Streams close before the server stops, and PortAudio lets go of JACK before it goes away.
            def stop_jack() -> None:
                with portaudio_released():
                    server.stop()
            stack.callback(stop_jack)
        rescan_devices()
        what = (f"JACK dummy driver ({audio_cfg.sample_rate_hz} Hz, {audio_cfg.block_frames}-frame periods)"
                if server.started_here else "the running JACK server")
        return server, "system", what
    if kind == "pulse":
        server = PulseServer(sample_rate_hz=audio_cfg.sample_rate_hz)
        server.start()
        stack.callback(server.close)
        rescan_devices()
        return server, "pulse", "a PulseAudio null sink (its monitor as input)"
    raise ValueError(f"unknown audio server {kind!r}: use jack or pulse")


def live_rig(stack: contextlib.ExitStack, render_cfg: RenderConfig, audio_cfg: AudioConfig, preset: str, server: str,
             make_player) -> tuple:
    """A live show on `preset` listening to an audio server, a player (`make_player(device, sample_rate_hz)`)
    wired into its input, an Xvfb display where there is none, and a probe that reads the centre of every
    drawn frame. Everything is closed by `stack`. Returns (show, started player, what the server is)."""
    from vj.show import LiveShow           # the window stack, only when measuring

    if not os.environ.get("DISPLAY"):
        from vj.output.xvfb import running_xvfb
        display = stack.enter_context(running_xvfb(f"{render_cfg.width_px}x{render_cfg.height_px}x24"))
        stack.enter_context(_env("DISPLAY", display))
        log.info("no display: measuring in Xvfb %s", display)
    srv, device, what = _start_server(server, audio_cfg, stack)
    before = _ports(srv)
    show = LiveShow(device, preset, render_cfg, audio_cfg, ControlConfig(osc_port=0))
    stack.callback(show.close)
    vj_inputs = sorted(p for p in _ports(srv) - before if ":in" in p)
    player = make_player(device, show.audio_cfg.sample_rate_hz)
    after_show = _ports(srv)
    player.start()
    stack.callback(player.stop)
    if isinstance(srv, JackServer):
        outs = sorted(p for p in _ports(srv) - after_show if ":out" in p)
        if not outs or not vj_inputs:
            raise AudioServerError(f"could not find the JACK ports (inputs {vj_inputs}, outputs {outs})")
        for port in vj_inputs:
            for cap in (p for p in srv.ports() if p.startswith("system:capture")):
                srv.disconnect(cap, port)
            srv.connect(outs[0], port)
    ctx = show.window.ctx

    def probe() -> float:
        w, h = show.window.framebuffer_size
        data = ctx.screen.read(viewport=((w - PROBE_PX) // 2, (h - PROBE_PX) // 2, PROBE_PX, PROBE_PX),
                               components=3)
        return float(np.frombuffer(data, np.uint8).mean()) / 255.0

    show.probe = probe
    return show, player, what


def drive(show, player, timeout_s: float, length_s: float | None = None) -> list[tuple[int, float]]:
    """Run the show's frame loop: a second of dark frames once audio flows (the probe's dark level), then arm
    the player; stop a second after it is done (or `length_s` after arming), or after `timeout_s`. Returns
    the input callbacks' arrivals: (samples delivered so far, time), in order."""
    arrivals: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    armed_at = finished_at = None
    while time.monotonic() < deadline:
        show.frame()
        for t, frames in show.source.arrivals():
            arrivals.setdefault(frames, t)
        now = time.monotonic()
        if armed_at is None and show.source.samples_read > 0 and show.frames > 30:
            armed_at = now + 1.0
        if armed_at is not None and now >= armed_at and not player.armed:
            player.arm()
            if length_s is not None:
                finished_at = now + length_s
        if length_s is None and player.done and finished_at is None:
            finished_at = now
        if finished_at is not None and now - finished_at > 1.0:
            break
    return sorted(arrivals.items())


def measure_latency(render_cfg: RenderConfig, audio_cfg: AudioConfig, *, clicks: int = 40, preset: str = "flash",
                    server: str = "jack", seed: int = 0, timeout_s: float | None = None) -> LatencyReport:
    """Play `clicks` clicks into a live show and time each one to the frame that shows it."""
    with contextlib.ExitStack() as stack:
        show, player, what = live_rig(stack, render_cfg, audio_cfg, preset, server,
                                      lambda device, sr: ClickPlayer(device, sr, audio_cfg.block_frames, clicks,
                                                                     seed=seed))
        sr = show.audio_cfg.sample_rate_hz
        show.frame_log = records = []
        arrivals = drive(show, player, timeout_s or 15.0 + clicks * 0.8)
        report = LatencyReport(server=what, clicks=clicks, preset=preset,
                               size=(render_cfg.width_px, render_cfg.height_px), block_frames=audio_cfg.block_frames)
        lat, worker = show.latency, show.engine.worker
        lat.input_latency_s = show.source.input_latency_s
        lat.model_elapsed_s, lat.model_fps = worker.last_elapsed_s, worker.fps
        report.estimate_ms = show.latency.split_ms()
        report.model_path_ms = show.latency.model_path_ms()
        report.display_fps = show.stats.summary().get("display_fps", 0.0)
        report.measured = analyse(records, arrivals, sr, show.source.input_latency_s)
        return report


@contextlib.contextmanager
def _env(name: str, value: str):
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def find_clicks(records: list[FrameRecord], sample_rate_hz: int, threshold: float = 0.1,
                quiet_s: float = 0.1) -> list[int]:
    """Stream indices where a sound starts after at least `quiet_s` of quiet, from the frames' audio."""
    blocks = [r for r in records if r.block is not None and len(r.block)]
    if not blocks:
        return []
    start = blocks[0].samples_read - len(blocks[0].block)
    audio = np.concatenate([r.block for r in blocks])
    loud = np.flatnonzero(np.abs(audio) > threshold)
    quiet = int(quiet_s * sample_rate_hz)
    out, last = [], -quiet - 1
    for i in loud:
        if i - last > quiet:
            out.append(start + int(i))
        last = i
    return out


class SoundClock:
    """When a sample of the input stream would have hit the converter, from the callbacks' arrivals: the
    arrival of the first callback that delivered it, minus the samples after it in that callback, minus the
    input latency the stream reports."""

    def __init__(self, arrivals: list[tuple[int, float]], sample_rate_hz: int, input_latency_s: float):
        self.frames = np.array([f for f, _ in arrivals])
        self.times = np.array([t for _, t in arrivals])
        self.sample_rate_hz = sample_rate_hz
        self.input_latency_s = input_latency_s

    def at(self, sample: int) -> tuple[float, float] | None:
        """(sound time, arrival time) of stream sample `sample`; None if no callback delivered it."""
        k = int(np.searchsorted(self.frames, sample, side="right"))   # first callback that delivered it
        if k >= len(self.frames):
            return None
        arrival, delivered = float(self.times[k]), int(self.frames[k])
        return arrival - self.input_latency_s - (delivered - 1 - sample) / self.sample_rate_hz, arrival


def analyse(records: list[FrameRecord], arrivals: list[tuple[int, float]], sample_rate_hz: int,
            input_latency_s: float) -> list[ClickLatency]:
    """Time each click in the frames' audio to the first frame whose probe shows the flash."""
    clicks = find_clicks(records, sample_rate_hz)
    probes = np.array([r.probe if r.probe is not None else np.nan for r in records])
    if not clicks or not np.isfinite(probes).any():
        return []
    first_click_read = next(i for i, r in enumerate(records) if r.samples_read > clicks[0])
    dark = float(np.nanmedian(probes[:max(1, first_click_read)]))
    bright = float(np.nanmax(probes))
    if bright - dark < 0.05:
        return []                            # the picture never flashed: nothing to time
    threshold = dark + 0.5 * (bright - dark)
    clock = SoundClock(arrivals, sample_rate_hz, input_latency_s)
    out = []
    for sample in clicks:
        timed = clock.at(sample)
        if timed is None:
            continue
        sound, arrival = timed
        read_i = next((i for i, r in enumerate(records) if r.samples_read > sample), None)
        if read_i is None:
            continue
        flash_i = next((i for i in range(read_i, len(records))
                        if records[i].probe is not None and records[i].probe > threshold), None)
        if flash_i is None or records[flash_i].t_swapped - records[read_i].t_read > MAX_FLASH_WAIT_S:
            continue
        if flash_i > read_i and records[flash_i - 1].probe > threshold:
            continue                         # still lit from the click before: not this click's flash
        r0, rf = records[read_i], records[flash_i]
        parts = {"audio buffering": arrival - sound, "wait for frame": r0.t_read - arrival,
                 "analysis hop": rf.t_read - r0.t_read, "render": rf.t_drawn - rf.t_read,
                 "swap": rf.t_swapped - rf.t_drawn}
        out.append(ClickLatency(sample, (rf.t_swapped - sound) * 1e3, {p: v * 1e3 for p, v in parts.items()}))
    return out


def run_latency_bench(render_cfg: RenderConfig, audio_cfg: AudioConfig, *, clicks: int = 40,
                      preset: str = "flash", server: str = "jack") -> LatencyReport:
    """The command: measure and print."""
    try:
        report = measure_latency(render_cfg, audio_cfg, clicks=clicks, preset=preset, server=server)
    except (AudioServerError, AudioDeviceError) as exc:
        raise SystemExit(f"vj bench latency: {exc}") from None
    for line in report.lines():
        print(line)
    return report

