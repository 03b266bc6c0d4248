"""A scene: a preset with its shaders, its params and its model (generator and worker), built aside and released as one.

Ownership is the point of this module. A `SceneModel` (a generator, the worker thread that renders it, the
workers the watchdog replaced) is closed exactly once, by whoever holds it last: the scene playing, a scene
that replaced it with the same model (`hand_over_model` moves it across), or the `SceneLoader` when a scene it
built is superseded, fails, or is never taken. The effects' GL programs and buffers belong to the engine's
`Chain`, which keeps the ones the next scene uses again and releases the rest (`Chain.set_effects`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from vj.catalog.store import CATALOG_PREFIX, FetchError
from vj.catalog.store import resolve as resolve_catalog
from vj.config import RenderConfig
from vj.gfx.isf import ISFError, ISFShader, load_isf
from vj.models.registry import create_generator
from vj.models.worker import ModelResult, ModelWorker
from vj.params import Param, Registry
from vj.presets import Preset, load_preset

log = logging.getLogger(__name__)
_SAID_MISSING: set[str] = set()       # catalog models a scene plays without (missing = "random"), logged once

# [model] keys that may name files (looked for beside the preset first).
MODEL_FILE_SETTINGS = ("checkpoint", "weights", "torchscript", "path", "img2img", "directions", "keyframes")
# Out of memory: each step renders at this fraction of the last size a side (0.56 of the pixels, and of the
# activations, which grow with them), down to MIN_MODEL_PX on the short side: four steps from 1280x720 to 405x228.
OOM_STEP = 0.75
MIN_MODEL_PX = 64


class SceneModel:
    """A generator and the worker that renders it: made together, closed together, once."""

    def __init__(self, generator, key: tuple, base_size: tuple[int, int], scale: float = 1.0):
        self.generator = generator
        self.key = key                # what the preset asked for: the same key keeps the same model
        self.base_size = base_size    # the size the preset asked for (width, height)
        self.scale = scale            # < 1 after out-of-memory steps: the model renders base_size times this a side
        self.worker: ModelWorker | None = None
        self.abandoned: list[ModelWorker] = []     # workers replaced while stuck in a render (their threads linger)
        self.closed = False
        self.first: ModelResult | None = None      # built live: its first frame, rendered on the loader thread
        self.out_of_sizes = False                  # out of memory at the smallest size too
        self._worker_args: dict = {}

    def start(self, torch_threads: int | None, frame_path: str) -> ModelWorker:
        if self.worker is None:
            self._worker_args = {"torch_threads": torch_threads, "frame_path": frame_path}
            self.worker = ModelWorker(self.generator, **self._worker_args)
        return self.worker

    def replace_worker(self) -> ModelWorker:
        """A new worker for the same generator, the stuck one abandoned: its thread ends if its render ever returns,
        and whatever it renders then is dropped."""
        old = self.worker
        old.close(timeout_s=0.0)
        self.abandoned = [w for w in self.abandoned if w.thread.is_alive()] + [old]
        self.worker = ModelWorker(self.generator, **{**self._worker_args, "frame_path": old.frame_path})
        self.worker.carry_times_from(old)
        return self.worker

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the worker (after its render in progress, waiting at most timeout_s) and the generator's own threads."""
        if self.closed:
            return
        self.closed = True
        if self.worker is not None:
            self.worker.close(timeout_s=timeout_s)
        close = getattr(self.generator, "close", None)      # the video prefetcher, for those that have one
        if callable(close):
            close()


@dataclass(eq=False)
class Scene:
    """A checked preset ready to play: its parsed shaders, its registry and its model."""

    preset: Preset
    shaders: list
    registry: Registry
    model: SceneModel | None          # None once handed over to the scene that replaced this one

    @property
    def key(self) -> tuple | None:
        return self.model.key if self.model is not None else None

    def hand_over_model(self) -> SceneModel:
        """The model, for the next scene that plays it too: this scene no longer closes it."""
        model, self.model = self.model, None
        return model

    def close(self, timeout_s: float = 5.0) -> None:
        if self.model is not None:
            self.model.close(timeout_s)
            self.model = None


def scene_key(preset: Preset) -> tuple:
    """What decides a scene's model: equal keys play the same generator."""
    return preset.model, tuple(sorted((k, repr(v)) for k, v in preset.model_settings.items()))


class SceneBuilder:
    """Reads presets and builds scenes: shaders found and parsed, the model made, the values checked."""

    def __init__(self, render_cfg: RenderConfig, shader_dirs: tuple[Path, ...], preset_dirs: list[Path] | None,
                 base_params: Iterable[Param]):
        self.render_cfg = render_cfg
        self.shader_dirs = shader_dirs
        self.preset_dirs = preset_dirs
        self.base_params = tuple(base_params)     # the engine's own params, in every scene's registry

    def find_shader(self, spec: str) -> Path:
        p = Path(spec)
        if p.suffix == ".fs" or "/" in spec:
            return p
        for d in self.shader_dirs:
            cand = d / f"{spec}.fs"
            if cand.is_file():
                return cand
        return self.shader_dirs[-1] / f"{spec}.fs"

    def load_shaders(self, preset: Preset) -> list[tuple[str, ISFShader | Path]]:
        out: list[tuple[str, ISFShader | Path]] = []
        for e in preset.effects:
            path = self.find_shader(e.shader)
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

    def read(self, spec: str | Preset) -> tuple[Preset, list]:
        """The preset and its parsed shaders (cheap: no model is built). PresetError when they are not good."""
        preset = spec if isinstance(spec, Preset) else load_preset(spec, self.preset_dirs)
        return preset, self.load_shaders(preset)

    def make_model(self, preset: Preset, scale: float = 1.0) -> SceneModel:
        """The preset's generator (no worker yet), at `scale` of its size a side. PresetError naming the setting."""
        try:
            settings = files_beside(dict(preset.model_settings), preset.path)
            if isinstance(settings.get("source_settings"), Mapping):          # deepdream's source model
                settings["source_settings"] = files_beside(dict(settings["source_settings"]), preset.path)
            base_size = model_size(settings.pop("size", None), self.render_cfg)
            width_px, height_px = scaled_size(base_size, scale)
            generator = create_generator(preset.model, width_px=width_px, height_px=height_px, **settings)
        except (TypeError, ValueError, OSError, FetchError) as exc:
            reason = f"model {preset.model!r}: {exc}"
            raise preset.error(reason, line=model_setting_line(preset, str(exc))) from None
        return SceneModel(generator, scene_key(preset), base_size, scale)

    def registry(self, preset: Preset, shaders: list, generator) -> Registry:
        """A new registry with the engine's, the model's and the effects' params; the preset validated against it."""
        scratch = Registry()
        scratch.declare_all(self.base_params)
        scratch.declare_all(generator.params())
        for name, shader in shaders:
            if isinstance(shader, ISFShader):
                scratch.declare_all(shader.params(f"/fx/{name}"))
        preset.validate(scratch)
        return scratch

    def build(self, preset: Preset, shaders: list, model: SceneModel) -> Scene:
        """A scene around `model`. When the preset does not validate the model is closed (if nothing else holds
        it, pass a model made for this scene) and the PresetError raised."""
        try:
            return Scene(preset, shaders, self.registry(preset, shaders, model.generator), model)
        except BaseException:
            model.close()
            raise

    def build_live(self, preset: Preset, shaders: list, features, torch_threads: int | None, frame_path: str,
                   scale: float = 1.0) -> Scene:
        """A whole scene with a running worker and its first frame rendered (the loader thread calls this: the
        first render traces or compiles the network, which happens here, not in front of the audience).
        Anything that fails closes what was made before it."""
        model = self.make_model(preset, scale)
        scene = self.build(preset, shaders, model)
        for path, v in preset.values.items():
            scene.registry.set(path, v, "preset")
        render_first(model, scene.registry.values(), features, torch_threads, frame_path)
        return scene

    def build_model_live(self, preset: Preset, values: Mapping, features, torch_threads: int | None, frame_path: str,
                         scale: float) -> SceneModel:
        """The preset's model alone at `scale`, started and with its first frame rendered (how an out-of-memory
        step rebuilds the playing scene's model on the loader thread); closed if anything fails."""
        return render_first(self.make_model(preset, scale), values, features, torch_threads, frame_path)


def render_first(model: SceneModel, values: Mapping, features, torch_threads: int | None, frame_path: str) -> SceneModel:
    """Start `model`'s worker and render its first frame into `model.first` on the calling thread (it traces or
    compiles the network); a failure closes the model and is raised."""
    try:
        worker = model.start(torch_threads, frame_path)
        model.first = worker.render_now(model.generator.advance(values, features, 0.0))
    except BaseException:
        model.close()
        raise
    return model


class SceneLoader:
    """Builds scenes on one background thread. The newest request wins; a scene built and not taken (superseded,
    or still building when the loader closes) is closed on the loader thread when its build ends."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self.job: dict | None = None          # the request the frame loop waits for: {"future", "preset", ...}
        self._lock = threading.Lock()

    def start(self, build: Callable[[], Scene], **info) -> None:
        self.cancel()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="vj-model-loader")
        self.job = {"future": self._pool.submit(build), **info}

    def cancel(self) -> None:
        """Drop the request in progress: its scene is closed when its build ends."""
        if self.job is not None:
            self.job["future"].add_done_callback(_close_untaken)
            self.job = None

    def take(self) -> Scene:
        """The finished job's scene (the caller owns it now), or the exception its build raised."""
        job, self.job = self.job, None
        return job["future"].result()

    def close(self) -> None:
        self.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _close_untaken(future: Future) -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().close(timeout_s=0.0)


def files_beside(settings: dict, preset_path: Path | None) -> dict:
    """A file named in a preset is looked for beside the preset first, then in the current folder; "catalog:NAME"
    is the catalog model's file (FetchError, naming the command that fetches it, when it is not downloaded, or,
    with the setting `missing = "random"`, left out so that the model runs with random weights)."""
    missing = settings.pop("missing", None)
    if missing not in (None, "error", "random"):
        raise ValueError(f"missing must be \"error\" or \"random\", got {missing!r}")
    for k in MODEL_FILE_SETTINGS:
        v = settings.get(k)
        if isinstance(v, str) and v.startswith(CATALOG_PREFIX):
            try:
                settings[k] = resolve_catalog(v)
            except FetchError as exc:
                if missing != "random":
                    raise
                # `missing = "random"`: the model plays without the file (random weights) until it is fetched;
                # said once a process, not at every visit to the scene. The text, not the exception: a handler
                # that keeps records (pytest's caplog) would keep its traceback, whose frames hold the scene
                # being built (the generator leaked that way).
                if v not in _SAID_MISSING:
                    _SAID_MISSING.add(v)
                    log.warning("%s; meanwhile the model runs with random weights", str(exc))
                del settings[k]
        elif isinstance(v, str) and v and preset_path is not None and not Path(v).expanduser().is_absolute():
            beside = preset_path.parent / v
            if beside.exists():
                settings[k] = str(beside)
    return settings


def model_setting_line(preset: Preset, message: str) -> int | None:
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


def scaled_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """`size` times `scale` a side, rounded, keeping the aspect; never below MIN_MODEL_PX on the short side
    (nor above the size itself)."""
    w, h = size
    if scale >= 1.0:
        return w, h
    k = max(scale, min(1.0, MIN_MODEL_PX / min(w, h)))
    return max(8, round(w * k)), max(8, round(h * k))


def smaller_scale(size: tuple[int, int], scale: float) -> float | None:
    """The next out-of-memory step below `scale`, or None when the size is already as small as it goes."""
    if scaled_size(size, scale) == scaled_size(size, scale * OOM_STEP):
        return None
    return scale * OOM_STEP
