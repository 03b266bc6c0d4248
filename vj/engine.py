"""The frame loop: drains control Changes, analyses audio, runs the model and the shader chain; the only module that imports everything."""

from __future__ import annotations

import dataclasses
import logging
import queue
import re
import time
from collections import deque
from collections.abc import Mapping
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
from vj.gfx.chain import Chain
from vj.gfx.context import auto_render_scale, gil_free_finish, is_software, resolve_frame_path
from vj.gfx.cudagl import CudaGLError
from vj.gfx.crossfade import ModelFader, TextureMixer
from vj.gfx.isf import ISFError, ISFShader, load_isf
from vj.gfx.master import MasterPass
from vj.gfx.upload import TextureUploader
from vj.gfx.watch import ShaderWatcher
from vj.models.registry import available_generators, create_generator
from vj.models.worker import ModelResult, ModelWorker
from vj.modulation import Modulator, ParamFrame
from vj.params import Change, Param, Registry, Value
from vj.presets import Preset, PresetError, dump_preset, list_presets, load_preset, preset_search_dirs

log = logging.getLogger(__name__)

SHADER_DIR = Path(__file__).resolve().parent.parent / "shaders"
_PRESET_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

QUANTIZE = ("off", "beat", "bar")
# [model] keys that may name files (looked for beside the preset first).
MODEL_FILE_SETTINGS = ("checkpoint", "weights", "torchscript", "path", "img2img", "directions", "keyframes")
QUANTIZE_WAIT_S = 4.0          # no beat for this long (silence, no tempo yet): switch anyway

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
    Param("/audio/lookahead_ms", 0.0, 0.0, 150.0, unit="ms", description="report beats this much early, to "
          "land them on the sound despite the output latency (the HUD's latency figure is a good value)"),
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
        self.preset: Preset | None = None
        self.generator = None
        self.worker: ModelWorker | None = None
        self._model_key: tuple | None = None
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
        self._loading: dict | None = None          # a model being built on the loader thread (live)
        self._loader: ThreadPoolExecutor | None = None
        self._snapper = TextureMixer(ctx)          # holds the last picture of the old scene
        self._dissolver = TextureMixer(ctx)
        self.preset_error: str | None = None       # why the edited preset file was not applied
        # Session recording (vj.session): sees every Change and command as it is applied, with its source.
        self.event_sink: Callable[[Change], None] | None = None
        self.model_stamps = (0, 0)     # step_live: (stamp submitted, stamp of the image taken); 0 for none

    # ---- scenes ---------------------------------------------------------------------------------

    def _find_shader(self, spec: str) -> Path:
        p = Path(spec)
        if p.suffix == ".fs" or "/" in spec:
            return p
        for d in self.shader_dirs:
            cand = d / f"{spec}.fs"
            if cand.is_file():
                return cand
        return self.shader_dirs[-1] / f"{spec}.fs"

    def _load_shaders(self, preset: Preset) -> list[tuple[str, ISFShader | Path]]:
        out: list[tuple[str, ISFShader | Path]] = []
        for e in preset.effects:
            path = self._find_shader(e.shader)
            if not path.is_file():
                # A missing shader is not fatal on stage: the chain shows a loud fallback pattern.
                log.error("%s: shader %r not found (looked in %s)", preset.path or preset.name, e.shader,
                          ", ".join(str(d) for d in self.shader_dirs))
                out.append((e.name, path))
                continue
            try:
                out.append((e.name, load_isf(path)))
            except ISFError as exc:
                raise preset.error(f"effect {e.name!r}: {exc}", e.shader) from None
        return out

    def load_preset(self, spec: str | Preset) -> Preset:
        """Validate everything first and apply nothing if anything is wrong (PresetError).

        Synchronous: a new model is built on the calling thread. The live show switches scenes through
        `switch_preset`, which builds a new model in the background instead.
        """
        preset, shaders, key = self._read_scene(spec)
        generator = self.generator if key == self._model_key and self.generator is not None \
            else self._make_generator(preset)
        registry = self._scene_registry(preset, shaders, generator)
        self._apply_scene(preset, shaders, key, generator, registry)
        return preset

    def _read_scene(self, spec: str | Preset) -> tuple[Preset, list, tuple]:
        """The preset, its parsed shaders and its model key (cheap: no model is built)."""
        preset = spec if isinstance(spec, Preset) else load_preset(spec, self.preset_dirs)
        shaders = self._load_shaders(preset)
        key = (preset.model, tuple(sorted((k, repr(v)) for k, v in preset.model_settings.items())))
        return preset, shaders, key

    def _make_generator(self, preset: Preset):
        settings = _files_beside(dict(preset.model_settings), preset.path)
        if isinstance(settings.get("source_settings"), Mapping):          # deepdream's source model
            settings["source_settings"] = _files_beside(dict(settings["source_settings"]), preset.path)
        try:
            width_px, height_px = model_size(settings.pop("size", None), self.render_cfg)
            return create_generator(preset.model, width_px=width_px, height_px=height_px, **settings)
        except (TypeError, ValueError, OSError) as exc:
            reason = f"model {preset.model!r}: {exc}"
            raise preset.error(reason, line=_model_setting_line(preset, str(exc))) from None

    def _scene_registry(self, preset: Preset, shaders: list, generator) -> Registry:
        """A new registry with the engine's, the model's and the effects' params; the preset validated against it."""
        scratch = Registry()
        scratch.declare_all(ENGINE_PARAMS)
        scratch.declare_all(generator.params())
        for name, shader in shaders:
            if isinstance(shader, ISFShader):
                scratch.declare_all(shader.params(f"/fx/{name}"))
        preset.validate(scratch)
        return scratch

    def _apply_scene(self, preset: Preset, shaders: list, key: tuple, generator, registry: Registry,
                     worker: ModelWorker | None = None) -> None:
        """Swap a checked scene in (main thread). `worker` is a running worker of `generator`, if one was made."""
        # The performer's master controls and input gain survive a scene change; the output grade is the scene's.
        keep = {p: v for p, v in self.registry.values().items() if p in PERFORMER_PATHS or p.startswith("/audio/")}
        self.registry = registry
        for path, v in keep.items():
            self.registry.set(path, v)
        for path, v in preset.values.items():
            self.registry.set(path, v, "preset")
        self.modulator.registry = self.registry
        self.modulator.set_routes(preset.routes)
        self.modulator.reset()
        self.chain.set_effects(shaders)
        if generator is not self.generator:
            old, old_generator = self.worker, self.generator
            self.generator = generator
            self.worker = worker or ModelWorker(generator, torch_threads=self.torch_threads,
                                                frame_path=self.frame_path)
            self._model_key = key
            if old is not None:
                # Live, never wait for the old model's render in progress: its thread ends after it.
                old.close(timeout_s=0.0 if self.live else 5.0)
            _close_generator(old_generator)
        elif worker is not None:
            worker.close()
        self.preset = preset
        self.preset_error = None
        self._presets = None
        self.watcher.watch({e.name: self._find_shader(e.shader) for e in preset.effects})
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
            preset, shaders, key = self._read_scene(str(path))
            if self.live and key != self._model_key:       # new model settings: build them aside
                self._start_model_load(preset, shaders, key, quantized=False)
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
        if self.live and self.generator is not None:
            try:
                preset, shaders, key = self._read_scene(spec)
            except PresetError as exc:
                self._scene_failed(exc)
                return None
            if key != self._model_key:
                self._start_model_load(preset, shaders, key, quantized)
                return None
            self._cancel_model_load()        # the newest request wins, and it keeps the current model
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
            preset, shaders, key = self._read_scene(spec)
            generator = self.generator if key == self._model_key and self.generator is not None \
                else self._make_generator(preset)
        except PresetError as exc:
            self._scene_failed(exc)
            return None
        return self._finish_switch(preset, shaders, key, generator)

    def _finish_switch(self, preset: Preset, shaders: list, key: tuple, generator,
                       worker: ModelWorker | None = None, first: ModelResult | None = None,
                       registry: Registry | None = None) -> Preset | None:
        """Swap the scene in and start the morph: params over /preset/morph_beats, the picture dissolving from
        the old scene's last frame (over /preset/model_fade_s at least when the model changed)."""
        beats = float(self.registry.get("/preset/morph_beats"))
        fade_s = float(self.registry.get("/preset/model_fade_s")) \
            if generator is not self.generator and self.live else 0.0
        before = self.registry
        last_picture = self._last_chain_out
        old_generator = self.generator
        try:
            if registry is None:
                registry = self._scene_registry(preset, shaders, generator)
        except PresetError as exc:
            if worker is not None:
                worker.close()
            self._scene_failed(exc)
            return None
        self._apply_scene(preset, shaders, key, generator, registry, worker)
        if first is not None:
            self.take_model_result(first)
        bpm = self.features.bpm if self.features.bpm > 0 else 120.0
        dur_s = max(beats * 60.0 / bpm, fade_s)
        _morph_latent(old_generator, generator, dur_s)
        if dur_s > 0.0 and last_picture is not None:
            pairs = {}
            for p in self.registry.params() if beats > 0.0 else ():
                if p.kind in ("float", "color", "point2d") and p.path in before and p.path not in PERFORMER_PATHS:
                    a, b = before.get(p.path), self.registry.get(p.path)
                    if a != b and before.param(p.path).kind == p.kind:
                        pairs[p.path] = (a, b)
            self._morph = {"t0": self._frame_t_s, "dur": dur_s, "pairs": pairs,
                           "picture": self._snapper.mix(last_picture, last_picture, 1.0)}
            self._apply_morph(self._frame_t_s)
        return preset

    # ---- models built in the background (live) --------------------------------------------------

    @property
    def loading(self) -> str | None:
        """The preset whose model is being built in the background, for the HUD; None when none is."""
        return self._loading["preset"].name if self._loading is not None else None

    def _cancel_model_load(self) -> None:
        if self._loading is not None:
            self._loading["future"].add_done_callback(_close_built)    # superseded: its worker is not needed
            self._loading = None

    def _start_model_load(self, preset: Preset, shaders: list, key: tuple, quantized: bool) -> None:
        """Build `preset`'s model, its first frame and its registry on the loader thread; a newer request wins."""
        self._cancel_model_load()
        if self._loader is None:
            self._loader = ThreadPoolExecutor(1, thread_name_prefix="vj-model-loader")
        features, threads, frame_path = self.features, self.torch_threads, self.frame_path

        def build():
            generator = self._make_generator(preset)
            registry = self._scene_registry(preset, shaders, generator)
            for path, v in preset.values.items():
                registry.set(path, v, "preset")
            worker = ModelWorker(generator, torch_threads=threads, frame_path=frame_path)
            # The first render compiles or traces the network: it happens here, not in front of the audience.
            first = worker.render_now(generator.advance(registry.values(), features, 0.0))
            return generator, worker, first, registry

        log.info("loading the model of preset %s (%s) in the background", preset.name, preset.model)
        self._loading = {"future": self._loader.submit(build), "preset": preset, "shaders": shaders, "key": key,
                         "quantized": quantized, "since": self._frame_t_s, "done_at": None}
        self._pending = None

    def _land_model_load(self, t_s: float) -> None:
        job = self._loading
        if not job["future"].done():
            return
        if job["done_at"] is None:
            job["done_at"] = t_s
        if job["quantized"] and not self._on_beat() and t_s - job["done_at"] <= QUANTIZE_WAIT_S:
            return
        self._loading = None
        try:
            generator, worker, first, registry = job["future"].result()
        except PresetError as exc:
            self._scene_failed(exc)
            return
        except Exception as exc:      # noqa: BLE001 - a model that fails to build must not stop the show
            self._scene_failed(PresetError(f"{job['preset'].path or job['preset'].name}: model "
                                           f"{job['preset'].model!r}: {type(exc).__name__}: {exc}"))
            return
        if first.error is not None:
            worker.close()
            self._scene_failed(PresetError(f"{job['preset'].path or job['preset'].name}: model "
                                           f"{job['preset'].model!r} failed its first frame: {first.error}"))
            return
        # Performer values and the preset's values are set again on the registry the frame loop will own.
        self._finish_switch(job["preset"], job["shaders"], job["key"], generator, worker, first, registry)

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
        if self._loading is not None:
            self._land_model_load(t_s)
        if self._morph is not None:
            self._apply_morph(t_s)
            if self._morph_k(t_s) >= 1.0 and t_s - self._morph["t0"] >= self._morph["dur"]:
                self._morph = None

    # ---- per frame ------------------------------------------------------------------------------

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
        values = {p: v for p, v in self.registry.values().items()
                  if not p.startswith("/audio/") and p not in PERFORMER_PATHS}
        preset = dataclasses.replace(self.preset, name=name, values=values, routes=tuple(self.modulator.routes),
                                     description=self.preset.description or f"saved from {self.preset.name}")
        folder = (self.preset_dirs or preset_search_dirs())[0]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.toml"
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(dump_preset(preset), encoding="utf-8")
        tmp.replace(path)                # a crash mid-write never leaves half a preset
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

    def analyse(self, mono: np.ndarray | None) -> Features:
        t0 = time.perf_counter()
        hops: list[Features] = []
        self.analyzer.beats.lookahead_s = float(self.registry.get("/audio/lookahead_ms")) / 1e3
        if mono is not None and len(mono):
            gain = float(self.registry.get("/audio/gain"))
            hops = self.analyzer.process(np.asarray(mono, np.float32) * np.float32(gain))
        self.features = merge_hops(hops, self.features)
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

    def take_model_result(self, result: ModelResult | None) -> None:
        if result is None:
            return
        self.times.add("model", result.elapsed_s)
        if result.error is not None:
            if result.error != self.model_error:
                log.error("model: %s (showing the last good frame)", result.error)
            self.model_error = result.error
            return
        self.model_error = None
        self.model_frames += 1
        t0 = time.perf_counter()
        try:
            self._model_tex = self.fader.push(result.image, self._frame_t_s, result.gl_rgba)
        except CudaGLError as exc:        # CUDA only: the GL context cannot share with CUDA; go through the host
            log.error("%s; model frames now go through pinned host memory", exc)
            self.frame_path = "pinned"
            self.worker.frame_path = "pinned"
            self._model_tex = self.fader.push(result.image.cpu().numpy(), self._frame_t_s, True)
        self.times.add("upload", time.perf_counter() - t0)

    def compose(self, frame: ParamFrame) -> moderngl.Texture:
        """Second half of a frame: the shader chain on the newest model image, then the master stage."""
        t0 = time.perf_counter()
        if self._model_tex is None:
            self._model_tex = self.uploader.upload(np.zeros((2, 2, 3), np.float32))
        source = self._model_tex
        blend = float(frame["/master/model_blend"])
        if self.live and blend > 0.0 and self.fader.newest is not None:
            source = self.fader.texture(frame.t_s, frame.dt_s, blend)
        if not frame["/master/freeze"] or self._last_chain_out is None:
            self._last_chain_out = self.chain.render(source, frame.values, self.features,
                                                     frame.t_s, frame.dt_s)
        shown = self._last_chain_out
        if self._morph is not None:       # dissolve from the old scene's last picture
            shown = self._dissolver.mix(self._morph["picture"], shown, self._morph_k(frame.t_s))
        fade_s = float(frame["/master/blackout_fade_s"])
        target = 1.0 if frame["/master/blackout"] else 0.0
        if fade_s <= 0.0:
            self._blackout = target
        else:
            step = frame.dt_s / fade_s
            self._blackout = min(self._blackout + step, target) if target > self._blackout \
                else max(self._blackout - step, target)
        out = self.master.render(shown, float(frame["/master/brightness"]) * (1.0 - self._blackout),
                                 float(frame["/master/saturation"]), float(frame["/master/contrast"]))
        if self.chain.after_pass is not None:
            self.chain.after_pass()
        self.times.add("shaders", time.perf_counter() - t0)
        return out

    def _end_events(self) -> None:
        """Events are pulses: true in exactly one ParamFrame, then false again."""
        for p in self.registry.params():
            if p.kind == "event" and self.registry.get(p.path):
                self.registry.set(p.path, False)

    def step_live(self, mono: np.ndarray | None, t_s: float, dt_s: float) -> moderngl.Texture:
        """One live frame: never waits for the model; shows its newest finished image."""
        self.hot_reload()
        frame, args = self.prepare(mono, t_s, dt_s)
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
        if self._loader is not None:
            self._cancel_model_load()
            self._loader.shutdown(wait=False, cancel_futures=True)
        if self.worker is not None:
            self.worker.close()
        _close_generator(self.generator)


def _close_generator(generator) -> None:
    """Stop a generator's own threads (the video prefetcher), for those that have any."""
    close = getattr(generator, "close", None)
    if callable(close):
        close()


def _morph_latent(old, new, duration_s: float) -> None:
    """Start `new`'s latent at `old`'s and slerp it to its own walk over duration_s, when they share a latent space."""
    if old is None or old is new or duration_s <= 0.0:     # the same generator: its walk just goes on
        return
    space = old.latent_space()
    z = old.current_latent()
    if space is None or z is None or space != new.latent_space():
        return
    new.morph_latent_from(z, duration_s)


def _close_built(future: Future) -> None:
    """Done-callback of a superseded background model build: stop the worker it started."""
    if not future.cancelled() and future.exception() is None:
        future.result()[1].close()


def _file_stamp(path: Path | None) -> tuple | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def model_size(size: object, render_cfg: RenderConfig) -> tuple[int, int]:
    """The model's output size: a scene's `[model] size` ([W, H] or "WxH"), else the render config's
    (--model-size; 256x144 by default). Larger sizes are for GPUs: StyleGAN at 1024, DeepDream at 1280x720."""
    if size is None:
        return render_cfg.model_width_px, render_cfg.model_height_px
    parts = size.lower().split("x") if isinstance(size, str) else size
    try:
        w, h = (int(v) for v in parts)
        if isinstance(size, list) and not all(isinstance(v, int) and not isinstance(v, bool) for v in size):
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"size must be [width, height] or \"WxH\", got {size!r}") from None
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise ValueError(f"size {w}x{h} is out of range (8..8192 px a side)")
    return w, h


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
        self._pending: deque[tuple[ParamFrame, Future | None]] = deque()

    def push(self, mono: np.ndarray | None, t_s: float, dt_s: float,
             emit: Callable[[moderngl.Texture], None]) -> None:
        frame, args = self.engine.prepare(mono, t_s, dt_s)
        fut = self._pool.submit(self.engine.worker.render_now, args) if args is not None else None
        self._pending.append((frame, fut))
        while len(self._pending) > self.depth:
            self._flush_one(emit)

    def _flush_one(self, emit: Callable[[moderngl.Texture], None]) -> None:
        frame, fut = self._pending.popleft()
        if fut is not None:
            self.engine.take_model_result(fut.result())
        emit(self.engine.compose(frame))

    def finish(self, emit: Callable[[moderngl.Texture], None]) -> None:
        while self._pending:
            self._flush_one(emit)
        self._pool.shutdown()


def _files_beside(settings: dict, preset_path: Path | None) -> dict:
    """A file named in a preset is looked for beside the preset first, then in the current folder."""
    for k in MODEL_FILE_SETTINGS:
        v = settings.get(k)
        if isinstance(v, str) and v and preset_path is not None and not Path(v).expanduser().is_absolute():
            beside = preset_path.parent / v
            if beside.exists():
                settings[k] = str(beside)
    return settings


def _model_setting_line(preset: Preset, message: str) -> int | None:
    """The line of the [model] setting an error message names (by key or by its text value), else of [model]."""
    def named(value) -> bool:
        if isinstance(value, Mapping):                   # source_settings = { checkpoint = "..." }
            return any(named(v) for v in value.values())
        return isinstance(value, str) and bool(value) and value in message

    items = list(preset.model_settings.items())
    # Most specific first: the message starts with the key ("keyframes must be ..."), names the setting's
    # text (a missing file), or has the key anywhere ("seed" is also in "a list of seeds").
    for match in (lambda k, v: message.startswith(k), lambda k, v: named(v), lambda k, v: k in message):
        for key, value in items:
            if match(key, value):
                line = preset.line_of(f"{key} =") or preset.line_of(f"{key}=")
                if line:
                    return line
    return preset.line_of("[model]")
