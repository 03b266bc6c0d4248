"""The frame loop: drains control Changes, analyses audio, runs the model and the shader chain; the only module that imports everything."""

from __future__ import annotations

import dataclasses
import logging
import queue
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Callable

import moderngl
import numpy as np

from vj.audio.analyzer import Analyzer
from vj.audio.features import SILENT, Features
from vj.config import AudioConfig, RenderConfig
from vj.control.state import FEATURE_KEYS, ControlHub, ControlSnapshot, is_command
from vj.files import write_atomic
from vj.gfx.chain import Chain
from vj.gfx.context import auto_render_scale, gil_free_finish, is_software, resolve_frame_path
from vj.gfx.cudagl import CudaGLError
from vj.gfx.crossfade import ModelFader, TextureMixer
from vj.gfx.isf import ISFError, load_isf
from vj.gfx.master import MasterPass
from vj.gfx.upload import TextureUploader
from vj.gfx.watch import ShaderWatcher
from vj.models.registry import available_generators
from vj.models.worker import ModelResult, ModelWorker
from vj.modulation import Modulator, ParamFrame
from vj.params import Change, Param, Registry, Value
from vj.presets import Preset, PresetError, dump_preset, list_presets, preset_search_dirs
from vj.scene import Scene, SceneBuilder, SceneLoader, SceneModel, scaled_size, scene_key, smaller_scale
from vj.watchdog import stack_where, thread_stack

log = logging.getLogger(__name__)

SHADER_DIR = Path(__file__).resolve().parent.parent / "shaders"
_PRESET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

QUANTIZE = ("off", "beat", "bar")
QUANTIZE_WAIT_S = 4.0          # no beat for this long (silence, no tempo yet): switch anyway
# The model watchdog (live). A render is slow when it runs SLOW_FACTOR times its median of the last few (at least
# SLOW_RENDER_S: a display frame's budget is ~17-40 ms, so a second is a long stretch without a new model
# picture) and hung at HANG_FACTOR times (at least HANG_S). A worker's first render traces or compiles the
# network (DeepDream on 2 CPU cores: ~10 s; torch.compile: minutes), so it is slow only after
# FIRST_RENDER_SLOW_S and never called hung: a new worker would wait for the same compile.
SLOW_RENDER_S, SLOW_FACTOR = 1.0, 10.0
HANG_S, HANG_FACTOR = 5.0, 20.0
FIRST_RENDER_SLOW_S = 15.0
MAX_WORKER_REPLACEMENTS = 3    # a model that hangs every worker gets no more threads: each one stays stuck
NOTE_S = 10.0                  # how long the HUD shows a watchdog or out-of-memory note

ENGINE_PARAMS = (
    Param("/master/brightness", 1.0, 0.0, 2.0, smoothing_s=0.05, description="output gain"),
    Param("/master/saturation", 1.0, 0.0, 2.0, smoothing_s=0.05, description="output saturation"),
    Param("/master/contrast", 1.0, 0.0, 2.0, smoothing_s=0.05, description="output contrast around mid grey"),
    Param("/master/blackout", False, kind="bool", description="fade the output to black"),
    Param("/master/blackout_fade_s", 0.15, 0.0, 5.0, unit="s", description="blackout fade time"),
    Param("/master/freeze", False, kind="bool", description="hold the current picture"),
    Param("/master/model_blend", 0.0, 0.0, 1.0, description="live: cross-fade from the previous model frame to "
          "the newest over this fraction of a model frame (0 cuts; smoother motion, later frames)"),
    Param("/preset/morph_beats", 0.0, 0.0, 64.0, unit="beats", description="switching presets cross-fades "
          "params and the picture over this many beats (0 cuts)"),
    Param("/preset/quantize", 0, 0, 2, kind="enum", labels=QUANTIZE, description="switch presets on the next "
          "beat or bar"),
    Param("/preset/model_fade_s", 1.0, 0.0, 10.0, unit="s", description="a scene change that changes the model "
          "dissolves from the old picture over at least this long (live)"),
    Param("/audio/lookahead_ms", 0.0, 0.0, 150.0, unit="ms", description="report beats this much early (on top "
          "of the measured latency when /audio/lookahead_auto is on): a projector's or LED processor's own delay"),
    Param("/audio/lookahead_auto", True, kind="bool", description="live: report beats early by the audio-to-light "
          "latency the show measures (the HUD's figure), so that a flash on the beat is seen on the beat"),
    Param("/audio/gain", 1.0, 0.0, 8.0, unit="x", description="input gain before analysis"),
)

PERFORMER_PATHS = frozenset({"/master/brightness", "/master/blackout", "/master/blackout_fade_s", "/master/freeze",
                             "/preset/morph_beats", "/preset/quantize", "/preset/model_fade_s"})


def merge_hops(hops: list[Features], previous: Features) -> Features:
    """One snapshot for a frame that spans several analysis hops: the newest levels, any onset or beat in any hop."""
    if not hops:
        return dataclasses.replace(previous, onset=False, beat=False)
    last = hops[-1]
    if len(hops) == 1:
        return last
    return dataclasses.replace(
        last,
        onset=any(h.onset for h in hops),
        beat=any(h.beat for h in hops),
        onset_strength=max(h.onset_strength for h in hops),
    )


@dataclass
class StageTimes:
    """Rolling per-stage timings in seconds, for the HUD and `vj bench`."""

    window: int = 600

    def __post_init__(self):
        self.samples: dict[str, deque] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.samples.setdefault(stage, deque(maxlen=self.window)).append(seconds)

    def summary(self) -> dict[str, tuple[float, float]]:
        """stage -> (p50_ms, p99_ms)."""
        out = {}
        for stage, d in self.samples.items():
            a = np.asarray(d) * 1e3
            out[stage] = (float(np.percentile(a, 50)), float(np.percentile(a, 99)))
        return out


class Engine:
    """Owns the registry, the analyzer, the model and the chain. Only the main (render) thread calls it."""

    def __init__(self, ctx: moderngl.Context, render_cfg: RenderConfig, audio_cfg: AudioConfig, *,
                 live: bool, shader_dirs: tuple[Path, ...] = (), preset_dirs: list[Path] | None = None):
        self.ctx = ctx
        self.render_cfg = render_cfg
        self.audio_cfg = audio_cfg
        self.live = live
        self.shader_dirs = tuple(shader_dirs) + (Path.cwd() / "shaders", SHADER_DIR)
        self.preset_dirs = preset_dirs
        self.registry = Registry()
        self.registry.declare_all(ENGINE_PARAMS)
        # Params of the show rather than of a scene (the projection outputs' corners, vj.mapping): every scene's
        # registry gets them with their current values, and no preset sets or saves them.
        self.show_params: dict[str, Param] = {}
        self.changes: queue.Queue[Change] = queue.Queue()
        self.hub = ControlHub(self.changes)
        self._pub_key: tuple | None = None
        self._pub_version = 0
        self._presets: tuple[str, ...] | None = None     # the preset folder's names, for the snapshot
        self._presets_at = 0.0
        # /cmd/... handlers, run on the main thread by drain_changes; the live show adds its own (record).
        self.commands: dict[str, Callable[[Value], None]] = {
            "/cmd/preset/load": lambda v: self._load_preset_command(v),
            "/cmd/preset/next": lambda v: self.step_preset(+1),
            "/cmd/preset/prev": lambda v: self.step_preset(-1),
            "/cmd/preset/save": lambda v: self.save_preset(str(v) if v is not None else ""),
            "/cmd/model/switch": lambda v: self.switch_model(v),
            "/cmd/tap": lambda v: self.tap(),
            "/cmd/resync": lambda v: self.resync(),
            "/cmd/blackout": lambda v: self._toggle("/master/blackout", v),
            "/cmd/freeze": lambda v: self._toggle("/master/freeze", v),
        }
        self.modulator = Modulator(self.registry)
        self.analyzer = Analyzer(audio_cfg)
        self.features: Features = SILENT
        self.tracked: Features = SILENT   # the analyser's own features, before any beat_source
        self.output_latency_s = 0.0     # live: audio-to-light latency the show measures (0 offline)
        # Set by the show to take the beat from elsewhere (Ableton Link): given each frame's features as the
        # tracker made them, it returns them with the beat fields replaced (vj.sync).
        self.beat_source: Callable[[Features], Features] | None = None
        self.render_scale = render_cfg.render_scale or auto_render_scale(ctx)
        # On a software rasteriser llvmpipe's threads already fill the cores; a second pool of torch
        # threads only fights them (offline 720p render: 15.9 -> 18.5 fps with one torch thread).
        self.torch_threads = 1 if is_software(ctx) else None
        self.frame_path = resolve_frame_path(ctx, render_cfg.frame_path)
        self.chain_size = render_cfg.chain_size(self.render_scale)
        self.chain = Chain(ctx, *self.chain_size)
        if is_software(ctx):
            # Wait for each pass without the GIL, so the other threads run meanwhile (see gil_free_finish):
            # offline the model and the encoder; live also the audio callback, which otherwise waited so
            # long that a JACK input at 256-frame blocks overflowed in 611-642 callbacks of 2800 (15 s of
            # the default scene in a 1280x720 window), against 26-66 with these waits.
            self.chain.after_pass = gil_free_finish()
        # The master renders at the chain's size: the window's blit and the recorder's swscale scale it
        # to the output size, which is cheaper than another full-size pass on a software rasteriser.
        self.master = MasterPass(ctx, *self.chain_size)
        self.uploader = TextureUploader(ctx)     # the black frame shown before the model's first one
        self.fader = ModelFader(ctx)
        self.times = StageTimes()
        self.builder = SceneBuilder(render_cfg, self.shader_dirs, preset_dirs, ENGINE_PARAMS)
        self.scene: Scene | None = None           # the scene playing: its preset, registry and model
        self.loader = SceneLoader()               # live: a scene or a model being built in the background
        self._oom_scale: dict[tuple, float] = {}  # model key -> the size scale it last ran out of memory above
        self.model_note: tuple[str, float] | None = None      # (what the watchdog or an OOM step did, when)
        self._slow_reported: tuple | None = None
        self._hung_reported: tuple | None = None
        self._model_tex: moderngl.Texture | None = None
        self._last_chain_out: moderngl.Texture | None = None
        self._frame_t_s = 0.0
        self._blackout = 0.0
        self.frame_index = 0
        self.model_error: str | None = None
        self.model_frames = 0
        # Hot reload (live): edited shader files recompile between frames, an edited preset file reloads.
        self.watcher = ShaderWatcher()
        self._preset_stamp: tuple | None = None
        self._preset_next_check = 0.0
        # Scene changes: a pending switch waits for the beat; a morph runs param and picture cross-fades.
        self._pending: tuple[str | Preset, float] | None = None      # (what, clock time requested)
        self._morph: dict | None = None
        self._snapper = TextureMixer(ctx)          # holds the last picture of the old scene
        self._dissolver = TextureMixer(ctx)
        self.preset_error: str | None = None       # why the edited preset file was not applied
        # Session recording (vj.session): sees every Change and command as it is applied, with its source.
        self.event_sink: Callable[[Change], None] | None = None
        self.model_stamps = (0, 0)     # step_live: (stamp submitted, stamp of the image taken); 0 for none

    # ---- scenes ---------------------------------------------------------------------------------

    @property
    def preset(self) -> Preset | None:
        return self.scene.preset if self.scene is not None else None

    @property
    def generator(self):
        return self.scene.model.generator if self.scene is not None else None

    @property
    def worker(self) -> ModelWorker | None:
        return self.scene.model.worker if self.scene is not None else None

    @property
    def _model_key(self) -> tuple | None:
        return self.scene.key if self.scene is not None else None

    def load_preset(self, spec: str | Preset) -> Preset:
        """Validate everything first and apply nothing if anything is wrong (PresetError).

        Synchronous: a new model is built on the calling thread. The live show switches scenes through
        `switch_preset`, which builds a new model in the background instead.
        """
        preset, shaders = self.builder.read(spec)
        self._apply_scene(self._scene_for(preset, shaders))
        return preset

    def _scene_for(self, preset: Preset, shaders: list) -> Scene:
        """`preset` as a scene built here. With the current model's key it gets no model of its own: it plays the
        current one (`_apply_scene` hands it over); otherwise its model is made now."""
        if self.scene is not None and scene_key(preset) == self._model_key:
            return Scene(preset, shaders, self.builder.registry(preset, shaders, self.generator), None)
        key = scene_key(preset)
        return self.builder.build(preset, shaders, self.builder.make_model(preset, self._oom_scale.get(key, 1.0)))

    def _apply_scene(self, scene: Scene) -> None:
        """Swap a checked scene in (main thread) and close the one it replaces, with its model unless the new scene
        plays that model too."""
        # The performer's master controls and input gain survive a scene change; the output grade is the scene's.
        keep = {p: v for p, v in self.registry.values().items() if self.kept_across_scenes(p)}
        old = self.scene
        if scene.model is None:
            scene.model = old.hand_over_model()
        self.registry = scene.registry
        self.registry.declare_all(self.show_params.values())
        for path, v in keep.items():
            self.registry.set(path, v)
        for path, v in scene.preset.values.items():
            self.registry.set(path, v, "preset")
        self.modulator.registry = self.registry
        self.modulator.set_routes(scene.preset.routes)
        self.modulator.reset()
        self.chain.set_effects(scene.shaders)
        scene.model.start(self.torch_threads, self.frame_path)
        self.scene = scene
        if old is not None:
            # Live, never wait for the old model's render in progress: its thread ends after it.
            old.close(timeout_s=0.0 if self.live else 5.0)
        self.preset_error = None
        self._presets = None
        preset = scene.preset
        self.watcher.watch({e.name: self.builder.find_shader(e.shader) for e in preset.effects})
        self._preset_stamp = _file_stamp(preset.path)
        log.info("preset %s loaded (%d effects, model %s)", preset.name, len(preset.effects), preset.model)

    def hot_reload(self, now_s: float | None = None) -> None:
        """Apply shader and preset files edited on disk (live, once per frame; checks at most twice a second).

        A shader that no longer compiles, or a preset that no longer validates, leaves the last good version
        running; the reason is in `chain.errors` / `preset_error` (the HUD shows both) and the log.
        """
        changed = self.watcher.poll(now_s)
        for name, path in changed:
            try:
                shader = load_isf(path, name)
            except (ISFError, OSError) as exc:
                self.chain.reload(name, path)          # records the error, keeps the last good program
                log.error("hot reload %s: %s (the last good version keeps running)", path.name, exc)
                continue
            if self.chain.reload(name, shader):
                self.registry.declare_all(shader.params(f"/fx/{name}"))
                log.info("hot reload: %s recompiled", path.name)
            else:
                log.error("hot reload %s: %s (the last good version keeps running)", path.name,
                          self.chain.errors.get(name, "failed"))
        path = self.preset.path if self.preset is not None else None
        now = time.monotonic() if now_s is None else now_s
        if path is None or now < self._preset_next_check:
            return
        self._preset_next_check = now + self.watcher.interval_s
        stamp = _file_stamp(path)
        if stamp is None or stamp == self._preset_stamp:     # gone for a moment (saved by rename): wait
            return
        self._preset_stamp = stamp
        try:
            preset, shaders = self.builder.read(str(path))
            if self.live and scene_key(preset) != self._model_key:       # new model settings: build them aside
                self._start_model_load(preset, shaders, quantized=False)
                return
            self.load_preset(preset)
            log.info("hot reload: preset %s reloaded from %s", self.preset.name, path)
        except PresetError as exc:
            self.preset_error = str(exc)
            log.error("hot reload: %s (the last good version keeps running)", exc)

    def step_preset(self, delta: int) -> Preset | None:
        names = list_presets(self.preset_dirs)
        if not names:
            return None
        cur = self.preset.path.stem if self.preset and self.preset.path else names[0]
        i = names.index(cur) if cur in names else 0
        name = names[(i + delta) % len(names)]
        return self.switch_preset(name)

    def switch_preset(self, spec: str | Preset, at_s: float | None = None) -> Preset | None:
        """A performer's scene change: on the next beat or bar if /preset/quantize asks, and morphing over
        /preset/morph_beats. Returns the preset when it switched now, None when it waits or failed.

        Live, a scene with a different model builds that model on a loader thread (a checkpoint load or a
        compile takes seconds) while the old scene keeps playing; it cuts over, with a cross-fade of
        /preset/model_fade_s, once the new model has rendered its first frame (and on the beat if quantised).
        """
        if at_s is not None:          # offline callers switch before the frame's prepare: its time starts the morph
            self._frame_t_s = at_s
        quantized = bool(self.registry.get("/preset/quantize")) and self.live
        if self.live and self.scene is not None:
            try:
                preset, shaders = self.builder.read(spec)
            except PresetError as exc:
                self._scene_failed(exc)
                return None
            if scene_key(preset) != self._model_key:
                self._start_model_load(preset, shaders, quantized)
                return None
            self.loader.cancel()        # the newest request wins, and it keeps the current model
            spec = preset
        if quantized:
            self._pending = (spec, self._frame_t_s)
            return None
        return self._switch_now(spec)

    def _scene_failed(self, exc: Exception) -> None:
        self.preset_error = str(exc)
        log.error("%s (the current scene keeps running)", exc)

    def _switch_now(self, spec: str | Preset) -> Preset | None:
        try:
            scene = self._scene_for(*self.builder.read(spec))
        except PresetError as exc:
            self._scene_failed(exc)
            return None
        return self._finish_switch(scene)

    def _finish_switch(self, scene: Scene) -> Preset:
        """Swap the scene in and start the morph: params over /preset/morph_beats, the picture dissolving from
        the old scene's last frame (over /preset/model_fade_s at least when the model changed)."""
        beats = float(self.registry.get("/preset/morph_beats"))
        fade_s = float(self.registry.get("/preset/model_fade_s")) if scene.model is not None and self.live else 0.0
        before = self.registry
        last_picture = self._last_chain_out
        old_generator = self.generator
        self._apply_scene(scene)
        first, scene.model.first = scene.model.first, None
        if first is not None:
            self.take_model_result(first)
        bpm = self.features.bpm if self.features.bpm > 0 else 120.0
        dur_s = max(beats * 60.0 / bpm, fade_s)
        _morph_latent(old_generator, self.generator, dur_s)
        if dur_s > 0.0 and last_picture is not None:
            pairs = {}
            for p in self.registry.params() if beats > 0.0 else ():
                if p.kind in ("float", "color", "point2d") and p.path in before and not self.kept_across_scenes(p.path):
                    a, b = before.get(p.path), self.registry.get(p.path)
                    if a != b and before.param(p.path).kind == p.kind:
                        pairs[p.path] = (a, b)
            self._morph = {"t0": self._frame_t_s, "dur": dur_s, "pairs": pairs,
                           "picture": self._snapper.mix(last_picture, last_picture, 1.0)}
            self._apply_morph(self._frame_t_s)
        return scene.preset

    # ---- models built in the background (live) --------------------------------------------------

    @property
    def loading(self) -> str | None:
        """The preset whose model is being built in the background, for the HUD; None when none is."""
        return self.loader.job["preset"].name if self.loader.job is not None else None

    def _start_model_load(self, preset: Preset, shaders: list, quantized: bool) -> None:
        """Build `preset`'s scene, its model and the model's first frame on the loader thread; a newer request wins."""
        features, threads, frame_path = self.features, self.torch_threads, self.frame_path
        scale = self._oom_scale.get(scene_key(preset), 1.0)
        log.info("loading the model of preset %s (%s) in the background", preset.name, preset.model)
        self.loader.start(lambda: self.builder.build_live(preset, shaders, features, threads, frame_path, scale),
                          kind="scene", preset=preset, shaders=shaders, quantized=quantized,
                          since=self._frame_t_s, done_at=None)
        self._pending = None

    def _land_model_load(self, t_s: float) -> None:
        job = self.loader.job
        if not job["future"].done():
            return
        if job["done_at"] is None:
            job["done_at"] = t_s
        if job["quantized"] and not self._on_beat() and t_s - job["done_at"] <= QUANTIZE_WAIT_S:
            return
        what = f"{job['preset'].path or job['preset'].name}: model {job['preset'].model!r}"
        try:
            built = self.loader.take()
        except PresetError as exc:
            self._scene_failed(exc)
            return
        except Exception as exc:      # noqa: BLE001 - a model that fails to build must not stop the show
            self._scene_failed(PresetError(f"{what}: {type(exc).__name__}: {exc}"))
            return
        model = built.model if job["kind"] == "scene" else built
        first = model.first
        if first.oom and self._shrink_after_oom(model, job):
            built.close(timeout_s=0.0)
            return
        if job["kind"] == "model":        # the playing scene's model, smaller: it plays, whatever its first frame
            self._swap_model(built)
            return
        if first.error is not None:
            built.close(timeout_s=0.0)
            self._scene_failed(PresetError(f"{what} failed its first frame: {first.error}"))
            return
        self._finish_switch(built)

    # ---- out of memory --------------------------------------------------------------------------

    def _shrink_after_oom(self, model: SceneModel, job: dict | None = None) -> bool:
        """`model` ran out of memory: build it again a step smaller (OOM_STEP a side), in the background live.
        False when it is as small as it goes. `job`: the background build whose first frame ran out of memory."""
        size = model.base_size
        scale = smaller_scale(size, model.scale)
        w, h = scaled_size(size, model.scale)
        if scale is None:
            if not model.out_of_sizes:         # said once; its renders go on failing and the show on its last picture
                model.out_of_sizes = True
                self.model_note = (f"out of memory at {w}x{h}, the smallest size", time.monotonic())
                log.error("model %s: out of memory even at %dx%d, the smallest size it goes to", model.key[0], w, h)
            return False
        self._oom_scale[model.key] = scale
        nw, nh = scaled_size(size, scale)
        self.model_note = (f"out of memory at {w}x{h}: now {nw}x{nh}", time.monotonic())
        log.error("model %s: out of memory at %dx%d; building it again at %dx%d", model.key[0], w, h, nw, nh)
        if job is not None and job["kind"] == "scene":           # a new scene's first frame: build that smaller
            self._start_model_load(job["preset"], job["shaders"], job["quantized"])
            return True
        preset, values = self.preset, self.registry.values()
        if not self.live:
            smaller = self.builder.make_model(preset, scale)
            self._swap_model(smaller)
            return True
        features, threads, frame_path = self.features, self.torch_threads, self.frame_path
        self.loader.start(lambda: self.builder.build_model_live(preset, values, features, threads, frame_path, scale),
                          kind="model", preset=preset, quantized=False, since=self._frame_t_s, done_at=None)
        return True

    def _swap_model(self, model: SceneModel) -> None:
        """The playing scene goes on with `model` (the same preset at another size) in place of its own."""
        if model.key != self._model_key:          # the scene changed meanwhile
            model.close(timeout_s=0.0)
            return
        old, self.scene.model = self.scene.model, model
        model.start(self.torch_threads, self.frame_path)
        old.close(timeout_s=0.0 if self.live else 5.0)
        first, model.first = model.first, None
        if first is not None:
            self.take_model_result(first)

    # ---- watchdog -------------------------------------------------------------------------------

    def _watch_model(self) -> None:
        """Live, per frame: a model render running far longer than it usually takes is reported with the worker's
        stack, once; one that does not return (HANG_S and more) gets its worker replaced, at most
        MAX_WORKER_REPLACEMENTS times a model (each replaced thread stays, stuck, until its render returns: Python
        cannot stop a thread)."""
        model = self.scene.model
        worker = model.worker
        running = worker.running_s()
        if running == 0.0:
            return
        typical = worker.typical_s()
        if typical is None:      # the first render traces or compiles the network: seconds on a CPU
            slow_s, hang_s = FIRST_RENDER_SLOW_S, float("inf")
        else:
            slow_s, hang_s = max(SLOW_RENDER_S, SLOW_FACTOR * typical), max(HANG_S, HANG_FACTOR * typical)
        if running < slow_s:
            return
        stamp = (id(worker), worker.frames_done)          # this render of this worker: reported once as each
        hung = running >= hang_s
        if (self._hung_reported if hung else self._slow_reported) == stamp:
            return
        stack = thread_stack(worker.thread)
        where = stack_where(stack)
        usual = f"{typical * 1e3:.0f} ms" if typical is not None else "no time yet"
        if hung:
            self._hung_reported = stamp
            if len(model.abandoned) >= MAX_WORKER_REPLACEMENTS:
                self.model_error = f"model hung at {where} {len(model.abandoned) + 1} times: switch scenes"
                log.error("model %s: a render has not returned for %.1f s, and %d workers hung before it: no more "
                          "replacements for this model (the show keeps its last picture). Stuck at %s:\n%s",
                          self.generator.name, running, len(model.abandoned), where, stack.rstrip())
                return
            log.error("model %s: a render has not returned for %.1f s (it usually takes %s); replacing its worker. "
                      "Stuck at %s:\n%s", self.generator.name, running, usual, where, stack.rstrip())
            model.replace_worker()
            self.model_note = (f"model hung {running:.0f} s at {where}: worker replaced", time.monotonic())
        else:
            self._slow_reported = stamp
            self.model_note = (f"model render slow: {running:.1f} s at {where}", time.monotonic())
            log.warning("model %s: a render has run for %.1f s (it usually takes %s); the show keeps the last "
                        "picture meanwhile. It is at %s:\n%s", self.generator.name, running, usual, where,
                        stack.rstrip())

    def _on_beat(self) -> bool:
        f = self.features
        bar = self.registry.get("/preset/quantize") == QUANTIZE.index("bar")
        return bool(f.beat and (not bar or f.downbeat))

    def _morph_k(self, t_s: float) -> float:
        m = self._morph
        x = min(1.0, max(0.0, (t_s - m["t0"]) / m["dur"])) if m["dur"] > 0 else 1.0
        return x * x * (3.0 - 2.0 * x)          # smoothstep: no jolt at either end

    def _apply_morph(self, t_s: float) -> None:
        k = self._morph_k(t_s)
        for path, (a, b) in self._morph["pairs"].items():
            if isinstance(a, tuple):
                v = tuple(x + (y - x) * k for x, y in zip(a, b))
            else:
                v = a + (b - a) * k
            self.registry.set(path, v, "morph")

    def _scene_tick(self, t_s: float) -> None:
        """Per frame: run a pending quantised switch on its beat, and advance a morph."""
        if self._pending is not None:
            spec, since = self._pending
            if self._on_beat() or t_s - since > QUANTIZE_WAIT_S:
                self._pending = None
                self._switch_now(spec)
        if self.loader.job is not None:
            self._land_model_load(t_s)
        if self._morph is not None:
            self._apply_morph(t_s)
            if self._morph_k(t_s) >= 1.0 and t_s - self._morph["t0"] >= self._morph["dur"]:
                self._morph = None

    # ---- per frame ------------------------------------------------------------------------------

    def kept_across_scenes(self, path: str) -> bool:
        """The performer's master controls, the input's settings and the show's own params: never a preset's."""
        return path in PERFORMER_PATHS or path.startswith("/audio/") or path in self.show_params

    def declare_show_params(self, params: list[Param]) -> None:
        """Params the show owns beside the scenes (declared on every scene's registry, kept across changes)."""
        for p in params:
            self.show_params[p.path] = p
        self.registry.declare_all(params)

    def drain_changes(self) -> None:
        while True:
            try:
                change = self.changes.get_nowait()
            except queue.Empty:
                return
            if self.event_sink is not None:
                self.event_sink(change)
            if is_command(change.path):
                self.run_command(change)
            else:
                self.registry.apply(change)

    # ---- commands -------------------------------------------------------------------------------

    def run_command(self, change: Change) -> None:
        """Run a /cmd/... change; a failure is logged with its reason and the show goes on."""
        handler = self.commands.get(change.path)
        if handler is None:
            self.registry._report(f"unknown:{change.path}",
                                  f"unknown command {change.path!r} (from {change.source or 'somewhere'}): ignored")
            return
        try:
            handler(change.value)
        except (PresetError, ValueError, OSError) as exc:
            log.error("%s: %s", change.path, exc)

    def _toggle(self, path: str, value: Value) -> None:
        self.registry.set(path, (not self.registry.get(path)) if value is None else value, "command")

    def _load_preset_command(self, name: Value) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("needs a preset name")
        self.switch_preset(name.strip())

    def switch_model(self, name: Value) -> None:
        """Keep the scene (effects, values, routes) and change its model to the generator `name`, with default
        settings; values and routes aimed at the old model's /model/ params are dropped."""
        name = str(name or "").strip()
        if name not in available_generators():
            raise ValueError(f"unknown model {name!r}; available: {', '.join(available_generators())}")
        if self.preset is None:
            raise ValueError("no preset loaded")
        p = self.preset
        preset = dataclasses.replace(
            p, model=name, model_settings=MappingProxyType({}),
            values=MappingProxyType({k: v for k, v in p.values.items() if not k.startswith("/model/")}),
            routes=tuple(r for r in p.routes if not r.target.startswith("/model/")))
        self.switch_preset(preset)

    def tap(self, t_s: float | None = None) -> None:
        """Tap tempo (key t, /cmd/tap): taps at the analyser's stream time set the tempo and the beat."""
        self.analyzer.beats.tap(self.features.t_s if t_s is None else t_s)

    def resync(self) -> None:
        self.analyzer.beats.resync()

    def save_preset(self, name: str) -> Path:
        """Write the current scene (model, effects, base values, routes) as presets/NAME.toml."""
        if not _PRESET_NAME.match(name):
            raise ValueError(f"preset name {name!r}: use letters, digits, '-' and '_' (at most 64)")
        if self.preset is None:
            raise ValueError("no preset loaded")
        values = {p: v for p, v in self.registry.values().items() if not self.kept_across_scenes(p)}
        preset = dataclasses.replace(self.preset, name=name, values=values, routes=tuple(self.modulator.routes),
                                     description=self.preset.description or f"saved from {self.preset.name}")
        folder = (self.preset_dirs or preset_search_dirs())[0]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.toml"
        write_atomic(path, dump_preset(preset))       # a crash mid-write never leaves half a preset
        self._presets = None
        log.info("preset saved to %s", path)
        return path

    # ---- what control servers see ---------------------------------------------------------------

    def publish(self) -> None:
        """Hand the control servers a fresh snapshot (main thread, once per frame)."""
        reg = self.registry
        key = (id(reg), reg.version)
        snap = self.hub.snapshot
        if key != self._pub_key:
            self._pub_key = key
            self._pub_version += 1
            params, values = tuple(reg.params()), reg.values()
            # The preset folder is read at most once a second: a morph or a fader changes values every frame.
            now = time.monotonic()
            if self._presets is None or now - self._presets_at > 1.0:
                self._presets, self._presets_at = tuple(list_presets(self.preset_dirs)), now
            presets = self._presets
        else:
            params, values, presets = snap.params, snap.values, snap.presets
        src = self.features.sources()
        features = MappingProxyType({k: float(src.get(k, 0.0)) for k in FEATURE_KEYS})
        self.hub.publish(ControlSnapshot(
            version=self._pub_version, params=params, values=values, features=features,
            preset=self.preset.name if self.preset else "", presets=presets,
            aliases=self.preset.osc_aliases if self.preset else MappingProxyType({}),
            t_s=self._frame_t_s, frame=self.frame_index))

    @property
    def midi_mappings(self) -> tuple:
        """The active preset's MIDI mappings ([[midi.cc]], ...), which the show lays over the controller's map."""
        return self.preset.midi if self.preset else ()

    @property
    def lookahead_s(self) -> float:
        """How early beats are reported: the user's /audio/lookahead_ms plus, with /audio/lookahead_auto, the
        measured output latency (so that what the frame shows is the beat at the moment it is seen)."""
        auto = self.output_latency_s if self.registry.get("/audio/lookahead_auto") else 0.0
        return float(self.registry.get("/audio/lookahead_ms")) / 1e3 + auto

    def analyse(self, mono: np.ndarray | None) -> Features:
        t0 = time.perf_counter()
        hops: list[Features] = []
        self.analyzer.beats.lookahead_s = self.lookahead_s
        if mono is not None and len(mono):
            gain = float(self.registry.get("/audio/gain"))
            hops = self.analyzer.process(np.asarray(mono, np.float32) * np.float32(gain))
        self.tracked = merge_hops(hops, self.tracked)
        self.features = self.tracked if self.beat_source is None else self.beat_source(self.tracked)
        if hops:
            self.times.add("analysis", (time.perf_counter() - t0) / len(hops))
        return self.features

    def prepare(self, mono: np.ndarray | None, t_s: float, dt_s: float):
        """First half of a frame: controls, audio, modulation, model args. Returns (ParamFrame, args|None)."""
        self.drain_changes()
        self._frame_t_s = t_s
        features = self.analyse(mono)
        self._scene_tick(t_s)
        frame = self.modulator.evaluate(features, dt_s, t_s, self.frame_index)
        self._end_events()
        self.publish()
        self.frame_index += 1
        args = None
        if not frame["/master/freeze"]:
            args = self.generator.advance(frame.values, features, dt_s)
        return frame, args

    def take_model_result(self, result: ModelResult | None, arrived_s: float | None = None) -> None:
        """A finished model image becomes the newest picture, arriving at clock time `arrived_s` (default: this
        frame's; a replay that restores images taken during skipped frames gives theirs, for the model fader)."""
        if result is None:
            return
        arrived_s = self._frame_t_s if arrived_s is None else arrived_s
        self.times.add("model", result.elapsed_s)
        if result.error is not None:
            if result.error != self.model_error:
                log.error("model: %s (showing the last good frame)", result.error)
            self.model_error = result.error
            if result.oom and self.loader.job is None:       # a build already on its way replaces this model
                self._shrink_after_oom(self.scene.model)
            return
        self.model_error = None
        self.model_frames += 1
        t0 = time.perf_counter()
        try:
            self._model_tex = self.fader.push(result.image, arrived_s, result.gl_rgba)
        except CudaGLError as exc:        # CUDA only: the GL context cannot share with CUDA; go through the host
            log.error("%s; model frames now go through pinned host memory", exc)
            self.frame_path = "pinned"
            self.worker.frame_path = "pinned"
            self._model_tex = self.fader.push(result.image.cpu().numpy(), arrived_s, True)
        self.times.add("upload", time.perf_counter() - t0)

    def compose(self, frame: ParamFrame, features: Features | None = None) -> moderngl.Texture:
        """Second half of a frame: the shader chain on the newest model image, then the master stage.

        `features`: the frame's own (OfflinePipeline prepares frames ahead, so the newest are a later frame's);
        None: the newest, which live are this frame's."""
        t0 = time.perf_counter()
        if self._model_tex is None:
            self._model_tex = self.uploader.upload(np.zeros((2, 2, 3), np.float32))
        source = self._model_tex
        blend = float(frame["/master/model_blend"])
        if self.live and blend > 0.0 and self.fader.newest is not None:
            source = self.fader.texture(frame.t_s, frame.dt_s, blend)
        if not frame["/master/freeze"] or self._last_chain_out is None:
            self._last_chain_out = self.chain.render(source, frame.values, features or self.features,
                                                     frame.t_s, frame.dt_s)
        shown = self._last_chain_out
        if self._morph is not None:       # dissolve from the old scene's last picture
            shown = self._dissolver.mix(self._morph["picture"], shown, self._morph_k(frame.t_s))
        self.advance_master(frame)
        out = self.master.render(shown, float(frame["/master/brightness"]) * (1.0 - self._blackout),
                                 float(frame["/master/saturation"]), float(frame["/master/contrast"]))
        if self.chain.after_pass is not None:
            self.chain.after_pass()
        self.times.add("shaders", time.perf_counter() - t0)
        return out

    def advance_master(self, frame: ParamFrame) -> None:
        """The master stage's own state for one frame: the blackout fade (dt-correct, in /master/blackout_fade_s)."""
        fade_s = float(frame["/master/blackout_fade_s"])
        target = 1.0 if frame["/master/blackout"] else 0.0
        if fade_s <= 0.0:
            self._blackout = target
        else:
            step = frame.dt_s / fade_s
            self._blackout = min(self._blackout + step, target) if target > self._blackout \
                else max(self._blackout - step, target)

    def carries_pictures(self) -> bool:
        """True when the next frame's picture reads an earlier frame's: a shader's persistent buffer, DeepDream's
        kept frame, a held freeze or a morph dissolving from the old scene's last picture. A frame that does not
        can be rendered alone after skipped ones (vj.chunks)."""
        return (self.chain.feeds_back or self.generator.keeps_pictures or self._morph is not None
                or bool(self.registry.get("/master/freeze")))

    def skip(self, mono: np.ndarray | None, t_s: float, dt_s: float):
        """An offline frame run forward without a picture: everything `prepare` carries (analysis, beat tracker,
        params, modulation smoothing, the model's walk), the blackout fade and the effects' frame counters. No model
        image, no shader pass: a render that starts with skipped frames matches one that rendered them exactly
        from its first rendered frame on, for scenes whose pictures do not feed back (persistent shader buffers,
        DeepDream's kept frame, a held freeze or a morph's picture do; those need frames rendered to warm up).
        vj.chunks decides which frames of a span to skip. Returns the model args `prepare` made (None when frozen):
        a live replay keeps those a later frame's model image is rendered from."""
        frame, args = self.prepare(mono, t_s, dt_s)
        self.advance_master(frame)
        self.chain.skip()
        return args

    def _end_events(self) -> None:
        """Events are pulses: true in exactly one ParamFrame, then false again."""
        for p in self.registry.params():
            if p.kind == "event" and self.registry.get(p.path):
                self.registry.set(p.path, False)

    def step_live(self, mono: np.ndarray | None, t_s: float, dt_s: float) -> moderngl.Texture:
        """One live frame: never waits for the model; shows its newest finished image."""
        self.hot_reload()
        frame, args = self.prepare(mono, t_s, dt_s)
        self._watch_model()
        submitted = self.worker.submit(args) if args is not None else 0
        result = self.worker.poll()
        self.model_stamps = (submitted, result.stamp if result is not None and result.error is None else 0)
        self.take_model_result(result)
        return self.compose(frame)

    def step_offline(self, mono: np.ndarray | None, t_s: float, dt_s: float) -> moderngl.Texture:
        """One offline frame: waits for the model, so every frame has its own model image."""
        frame, args = self.prepare(mono, t_s, dt_s)
        if args is not None:
            self.take_model_result(self.worker.render_now(args))
        return self.compose(frame)

    def read_rgb(self, tex: moderngl.Texture | None = None) -> np.ndarray:
        """The newest frame at the chain's size (H, W, 3) uint8, for the recorder (which scales it)."""
        t0 = time.perf_counter()
        rgb = self.master.read_rgb()
        self.times.add("readback", time.perf_counter() - t0)
        return rgb

    def snapshot(self) -> np.ndarray:
        """The newest frame at the output size, for screenshots."""
        return self.master.read_rgb((self.render_cfg.width_px, self.render_cfg.height_px))

    def close(self) -> None:
        self.loader.close()
        if self.scene is not None:
            self.scene.close()


def _morph_latent(old, new, duration_s: float) -> None:
    """Start `new`'s latent at `old`'s and slerp it to its own walk over duration_s, when they share a latent space."""
    if old is None or old is new or duration_s <= 0.0:     # the same generator: its walk just goes on
        return
    space = old.latent_space()
    z = old.current_latent()
    if space is None or z is None or space != new.latent_space():
        return
    new.morph_latent_from(z, duration_s)


def _file_stamp(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class OfflinePipeline:
    """Offline frames with the model running ahead: frame n's model renders while earlier frames' shaders run.

    Deterministic: model args are made in frame order on this thread; only `render` runs aside, and
    every frame is composed with its own model image. `depth` frames may be in flight: more than one
    hides the model's latency when the shaders and the encoder compete with it for the cores.
    """

    def __init__(self, engine: Engine, depth: int = 2):
        self.engine = engine
        self.depth = max(1, depth)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vj-model")
        self._pending: deque[tuple[ParamFrame, Features, Future | None]] = deque()

    def push(self, mono: np.ndarray | None, t_s: float, dt_s: float,
             emit: Callable[[moderngl.Texture], None]) -> None:
        frame, args = self.engine.prepare(mono, t_s, dt_s)
        fut = self._pool.submit(self.engine.worker.render_now, args) if args is not None else None
        self._pending.append((frame, self.engine.features, fut))
        while len(self._pending) > self.depth:
            self._flush_one(emit)

    def _flush_one(self, emit: Callable[[moderngl.Texture], None]) -> None:
        frame, features, fut = self._pending.popleft()
        if fut is not None:
            self.engine.take_model_result(fut.result())
        # The frame's own features: the engine's newest are `depth` frames ahead (the shaders' audio and
        # spectrum textures led the picture by two frames, 67 ms at 30 fps, before they were kept here).
        emit(self.engine.compose(frame, features))

    def finish(self, emit: Callable[[moderngl.Texture], None]) -> None:
        while self._pending:
            self._flush_one(emit)
        self._pool.shutdown()
