"""`vj bench soak`: a live show for minutes to hours under real clients, and what it holds on to minute by minute.

The show runs here, in a window (under Xvfb where there is no display), on the demo track, with OSC, OSCQuery,
the web page, MIDI on JACK and a session recording on. A driver in another process plays the clients: preset
loads and morphs and `/cmd/model/switch` over OSC across every model kind that runs here (CPPN, plasma,
DeepDream, a small StyleGAN checkpoint written for the run, a video clip), parameter sweeps over OSC and MIDI,
web clients that connect and leave, recordings started and stopped. Each minute prints RSS, live GL objects,
threads, open files, frame time p50/p99 and model fps; the end prints the growth per 100 scene changes after
warm-up (the first third of the run) and what that makes over a four-hour set.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vj.allocator import malloc_arenas, mallinfo, trim
from vj.config import AudioConfig, ControlConfig, RenderConfig

log = logging.getLogger(__name__)

MIDI_CLIENT = "vj-soak"               # the driver's virtual JACK MIDI controller: MIDI_CLIENT:knobs
HOURS = 4.0                           # the set length the growth is projected over
# The scenes, by model kind: the shipped ones by name, the others written into the run's folder.
SCENES = ("default", "stylegan", "nebula", "flash", "video", "ember", "dream", "prism")
# /cmd/model/switch goes through these, with default settings (video needs a path: its preset covers it).
MODEL_KINDS = ("cppn", "plasma", "deepdream", "stylegan")


@dataclass
class Row:
    minute: float
    changes: int
    rss_mb: float
    gl_objects: int
    threads: int
    fds: int
    frame_ms_p50: float
    frame_ms_p99: float
    model_fps: float

    def line(self) -> str:
        return (f"{self.minute:6.1f} min  {self.changes:5d} changes  RSS {self.rss_mb:7.1f} MB  GL {self.gl_objects:4d}"
                f"  threads {self.threads:3d}  files {self.fds:3d}  frame p50 {self.frame_ms_p50:6.1f} ms"
                f"  p99 {self.frame_ms_p99:6.1f} ms  model {self.model_fps:5.1f} fps")


@dataclass
class SoakReport:
    rows: list[Row] = field(default_factory=list)
    switch_every_s: float = 10.0

    def summary(self) -> list[str]:
        """Growth after warm-up (the first third of the rows): per 100 scene changes and over HOURS."""
        after = self.rows[len(self.rows) // 3:]
        if len(after) < 2 or after[-1].changes == after[0].changes:
            return ["soak: too short to tell (run a few minutes with scene changes)"]
        x = np.array([r.changes for r in after], float)
        y = np.array([r.rss_mb for r in after], float)
        per_change = float(np.polyfit(x, y, 1)[0])                     # MB per scene change, least squares
        changes_per_set = HOURS * 3600.0 / self.switch_every_s
        first, last = after[0], after[-1]
        # GL objects, threads and files depend on the scene playing when a row is taken (one scene has more
        # effects than another), and p99 on the minute: compare the first and the last k rows after warm-up,
        # the most of each count and the median p99, so that two rows of different scenes are not read as growth.
        k = max(2, len(after) // 4)
        head, tail = after[:k], after[-k:]

        def most(attr: str) -> str:
            return f"{max(getattr(r, attr) for r in head)} -> {max(getattr(r, attr) for r in tail)}"
        p99 = [float(np.median([r.frame_ms_p99 for r in rows])) for rows in (head, tail)]
        return [f"after warm-up ({first.minute:.0f} min, {first.changes} changes) to the end "
                f"({last.minute:.0f} min, {last.changes} changes):",
                f"  RSS {per_change * 100:+.1f} MB per 100 scene changes; over {HOURS:g} h at one change every "
                f"{self.switch_every_s:g} s ({changes_per_set:.0f} changes): {per_change * changes_per_set:+.0f} MB",
                f"  RSS {first.rss_mb:.1f} -> {last.rss_mb:.1f} MB",
                f"  the most in the first {k} minutes after warm-up -> in the last {k}: GL objects {most('gl_objects')}, "
                f"threads {most('threads')}, files {most('fds')}",
                f"  frame p99, median of those minutes: {p99[0]:.1f} -> {p99[1]:.1f} ms"]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def gl_objects() -> collections.Counter:
    """moderngl objects alive and not released, by type (a released one holds an InvalidObject)."""
    import moderngl
    kinds = {moderngl.Texture, moderngl.Framebuffer, moderngl.Program, moderngl.Buffer, moderngl.VertexArray,
             moderngl.Renderbuffer, moderngl.Sampler}
    return collections.Counter(type(o).__name__ for o in gc.get_objects()
                               if type(o) in kinds and type(o.mglo).__name__ != "InvalidObject")


class Trace:
    """`--trace`: where the memory sits, a line a minute after each row (what a growing RSS is made of).

    mem: /proc/self/smaps_rollup's anonymous and file-backed resident memory; glibc malloc's view (mallinfo2:
    bytes taken from the system, in use and free inside its arenas; mmapped chunks) and its arena count;
    torch's compiled networks (vj.models.shared) and TorchScript functions; Python objects and the types that
    grew most since the last line. maps: anonymous mappings (/proc/self/smaps) that came, went or grew since
    the last line, by size (thread stacks, malloc heaps, Python's arenas and the rest each have their own).
    trim: then malloc_trim(0), and how much RSS that gave back (free memory glibc held on to). py: tracemalloc,
    the allocation sites that grew most since the last line and since the first; it slows every Python
    allocation, and on 2 cores the show fell to a few frames a second and a third of its scene changes.
    """

    def __init__(self, what: str, out=print) -> None:
        self.what = {w.strip() for w in what.split(",") if w.strip()}
        unknown = self.what - {"mem", "maps", "trim", "py"}
        if unknown:
            raise ValueError(f"--trace: unknown {', '.join(sorted(unknown))} (use mem, maps, trim, py)")
        self.out = out
        self._types: collections.Counter | None = None
        self._maps: dict[str, tuple[float, float]] | None = None
        self._snapshot = self._first = None
        if "py" in self.what:
            import tracemalloc
            tracemalloc.start(8)

    def row(self) -> None:
        smaps = _smaps_rollup()
        anon, rss = smaps.get("Anonymous", 0.0), smaps.get("Rss", 0.0)
        line = f"        trace  anon {anon:7.1f} MB  file {rss - anon:6.1f} MB"
        mi = mallinfo()
        if mi is not None:
            line += (f"  malloc: system {mi['system']:7.1f} MB, in use {mi['in_use']:7.1f}, free {mi['free']:6.1f}, "
                     f"mmapped {mi['mmapped']:6.1f}, arenas {malloc_arenas()}")
        if "torch" in sys.modules:
            import torch
            from vj.models.shared import SHARED
            line += f"  shared nets {len(SHARED)}, jit functions {len(torch.jit._state._python_cu.get_functions())}"
        types = collections.Counter(type(o).__name__ for o in gc.get_objects())
        grown = "" if self._types is None else ", ".join(
            f"{k} {n:+d}" for k, n in (types - self._types).most_common(6))
        self._types = types
        self.out(f"{line}  py objects {sum(types.values())}" + (f" (grew: {grown})" if grown else ""))
        if "maps" in self.what:
            self._map_row()
        if "trim" in self.what:
            before = rss_mb()
            trim()
            self.out(f"        trace  malloc_trim gave back {before - rss_mb():.1f} MB")
        if "py" in self.what:
            import tracemalloc
            snap = tracemalloc.take_snapshot().filter_traces((tracemalloc.Filter(False, tracemalloc.__file__),))
            line = f"        trace  tracemalloc {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB"
            for since, old in (("the last line", self._snapshot), ("the first", self._first)):
                if old is not None:
                    line += f"\n          since {since}:"
                    for stat in snap.compare_to(old, "traceback")[:5]:
                        frame = stat.traceback[0]
                        line += (f"\n          {stat.size_diff / 2**20:+.2f} MB {stat.count_diff:+d} blocks "
                                 f"{frame.filename}:{frame.lineno}")
            self._snapshot, self._first = snap, self._first or snap
            self.out(line)

    def _map_row(self) -> None:
        maps = _anon_mappings()
        if self._maps is not None:
            came = collections.Counter()
            for key, (size, rss) in maps.items():
                old = self._maps.get(key)
                if old is None:
                    came[f"+{size:g}"] += rss
                elif rss != old[1]:
                    came[f"{size:g}"] += rss - old[1]
            for key, (size, rss) in self._maps.items():
                if key not in maps:
                    came[f"-{size:g}"] -= rss
            top = sorted(came.items(), key=lambda kv: -abs(kv[1]))[:6]
            self.out(f"        trace  anon mappings {len(maps)}, resident {sum(r for _, r in maps.values()):.1f} MB;"
                     f" by mapping size in MB (+ came, - went): "
                     + ", ".join(f"{k} {v:+.2f}" for k, v in top))
        self._maps = maps


def _smaps_rollup() -> dict[str, float]:
    """/proc/self/smaps_rollup in MB (Linux; empty elsewhere)."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            return {parts[0].rstrip(":"): int(parts[1]) / 1024 for parts in (line.split() for line in f)
                    if len(parts) == 3 and parts[2] == "kB"}
    except OSError:
        return {}


def _anon_mappings() -> dict[str, tuple[float, float]]:
    """Anonymous mappings of this process: start address -> (size, resident) in MB (Linux; empty elsewhere)."""
    out: dict[str, tuple[float, float]] = {}
    try:
        with open("/proc/self/smaps") as f:
            key = None
            for line in f:
                parts = line.split()
                if "-" in parts[0] and not parts[0].endswith(":"):       # a mapping's header line
                    anon = len(parts) < 6 or parts[5] in ("[heap]", "[stack]")
                    start, end = (int(a, 16) for a in parts[0].split("-"))
                    key = parts[0].split("-")[0] if anon else None
                    size = (end - start) / 2**20
                elif key is not None and parts[0] == "Rss:":
                    out[key] = (round(size, 2), int(parts[1]) / 1024)
    except OSError:
        pass
    return out


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_scenes(folder: Path) -> dict[str, str]:
    """The run's own scenes (a StyleGAN checkpoint and a video clip, made here): name -> preset file."""
    from vj.models.stylegan.tiny import write_checkpoint
    from vj.video.bench import synthetic_clip
    write_checkpoint(folder / "tiny-stylegan.pt", seed=3)
    synthetic_clip(folder / "clip.mp4", width_px=320, height_px=180, seconds=4)
    files = {}
    for name, model in (("stylegan", 'name = "stylegan"\ncheckpoint = "tiny-stylegan.pt"'),
                        ("video", 'name = "video"\npath = "clip.mp4"')):
        path = folder / f"soak-{name}.toml"
        path.write_text(f'name = "soak {name}"\n[model]\n{model}\n[[effects]]\nshader = "feedback"\n'
                        f'[[effects]]\nshader = "mirror"\n')
        files[name] = str(path)
    return files


def run_soak(render_cfg: RenderConfig, *, minutes: float = 30.0, switch_every_s: float = 10.0,
             out=print, trace: str | None = None) -> SoakReport:
    """The command: the show here, the driver in a child process, a row a minute and the summary.
    `trace` (mem, trim, py, comma-separated): a Trace line after each row."""
    from vj.audio.servers import AudioServerError, JackServer
    from vj.audio.sources import portaudio_released
    from vj.show import LiveShow
    report = SoakReport(switch_every_s=switch_every_s)
    tracer = Trace(trace, out) if trace else None
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vj-soak-")))
        if not os.environ.get("DISPLAY"):
            from vj.output.xvfb import running_xvfb
            display = stack.enter_context(running_xvfb(f"{render_cfg.width_px}x{render_cfg.height_px}x24"))
            os.environ["DISPLAY"] = display
        midi = None
        jack = JackServer()
        try:
            jack.start()
            stack.callback(_stop_jack, jack, portaudio_released)
            midi = f"{MIDI_CLIENT}:knobs"
        except AudioServerError as exc:
            out(f"soak: no MIDI controller ({exc})")
        scenes = {name: name for name in SCENES} | write_scenes(folder)
        osc_port = _free_udp_port()
        control = ControlConfig(osc_port=osc_port, oscquery_port=0, mdns=False, web=True, web_port=0,
                                midi_port=midi, midi_map="generic" if midi else None,
                                midi_api="jack" if midi else "auto")
        show = LiveShow("demo", "default", render_cfg, AudioConfig(), control, session=folder / "session")
        stack.callback(show.close)
        plan = {"osc_port": osc_port, "web_port": show.osc.web.port, "midi": midi, "minutes": minutes,
                "switch_every_s": switch_every_s, "scenes": [scenes[n] for n in SCENES], "kinds": MODEL_KINDS,
                "record_dir": str(folder)}
        driver = subprocess.Popen([sys.executable, "-c", "import sys, json; from vj.soak import drive; "
                                   "drive(json.loads(sys.argv[1]))", json.dumps(plan)])
        stack.callback(_stop, driver)
        out(f"soak: {minutes:g} min, a scene change every {switch_every_s:g} s, show at "
            f"{render_cfg.width_px}x{render_cfg.height_px}; OSC {osc_port}, web {show.osc.web.port}, "
            f"MIDI {midi or 'off'}")
        t0 = time.monotonic()
        next_row, changes = t0 + 60.0, 0
        preset, generator = show.engine.preset, show.engine.generator
        while time.monotonic() - t0 < minutes * 60.0 and driver.poll() is None:
            show.frame()
            if show.engine.preset is not preset or show.engine.generator is not generator:   # a scene change landed
                preset, generator = show.engine.preset, show.engine.generator
                changes += 1
            if time.monotonic() >= next_row:
                next_row += 60.0
                stats = show.stats.summary()
                gc.collect()
                row = Row((time.monotonic() - t0) / 60.0, changes, rss_mb(), sum(gl_objects().values()),
                          len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd")),
                          stats.get("frame_ms_p50", 0.0), stats.get("frame_ms_p99", 0.0), show.engine.worker.fps)
                show.stats.times_s.clear()                  # the next row's frame times are its own minute's
                report.rows.append(row)
                out(row.line())
                if tracer is not None:
                    tracer.row()
        if driver.poll() not in (None, 0):
            out(f"soak: the driver stopped early (exit {driver.returncode})")
    for line in report.summary():
        out(line)
    return report


def _stop_jack(jack, portaudio_released) -> None:
    with portaudio_released():            # PortAudio's JACK backend aborts the process if its server goes first
        jack.stop()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def drive(plan: dict) -> None:
    """The clients, in their own process: a scene change every switch_every_s, sweeps and visits between."""
    from pythonosc.udp_client import SimpleUDPClient
    osc = SimpleUDPClient("127.0.0.1", plan["osc_port"])
    controller = None
    if plan["midi"]:
        import mido
        controller = mido.Backend("mido.backends.rtmidi/UNIX_JACK").open_output("knobs", client_name=MIDI_CLIENT)
    scenes, kinds = plan["scenes"], plan["kinds"]
    step_s, end = plan["switch_every_s"], time.monotonic() + plan["minutes"] * 60.0 + 5.0
    n, next_change, recording = 0, time.monotonic() + step_s, None
    while time.monotonic() < end:
        now = time.monotonic()
        phase = now % 8.0 / 8.0                                      # an 8 s triangle sweep
        level = 1.0 - abs(2.0 * phase - 1.0)
        osc.send_message("/master/brightness", 0.6 + 0.6 * level)       # params every scene has
        osc.send_message("/norm/model/speed", level)
        if controller is not None:                                   # the generic map's mod wheel: /model/speed
            import mido
            controller.send(mido.Message("control_change", control=1, value=int(127 * level)))
        if now >= next_change:
            next_change += step_s
            n += 1
            if n % 4 == 3:                                           # a model switch: same scene, other model
                osc.send_message("/cmd/model/switch", kinds[(n // 4) % len(kinds)])
            else:                                                    # a preset load, every other one a morph
                osc.send_message("/preset/morph_beats", 2.0 if n % 2 else 0.0)
                osc.send_message("/cmd/preset/load", scenes[n % len(scenes)])
            if n % 6 == 0:
                _visit_web_page(plan["web_port"])
            if n % 9 == 0:
                if recording is None:
                    recording = str(Path(plan["record_dir"]) / f"take-{n}.mp4")
                    osc.send_message("/cmd/record/start", recording)
                else:
                    osc.send_message("/cmd/record/stop", [])
                    Path(recording).unlink(missing_ok=True)           # a long soak must not fill the disk
                    recording = None
        time.sleep(0.1)
    if controller is not None:
        controller.close()


def _visit_web_page(port: int) -> None:
    """A web client: load the page, listen on its websocket for a few messages, leave."""
    import urllib.request
    from websockets.sync.client import connect
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            r.read()
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=5) as ws:
            for _ in range(5):
                ws.recv(timeout=5)
    except (OSError, TimeoutError) as exc:                           # the show logs its own side; go on
        print(f"soak driver: web client: {exc}", file=sys.stderr)
