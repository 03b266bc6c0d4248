"""What a cluster render is: the job's settings and its input files, the same on every worker, named by a digest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from vj.config import AudioConfig, RenderConfig
from vj.gfx.isf import ISFError, load_isf
from vj.presets import PresetError, find_preset, load_preset
from vj.scene import MODEL_FILE_SETTINGS

FORMAT = 1        # bump when what a chunk holds changes: a resumed job never mixes chunks of two formats


@dataclass(frozen=True)
class Job:
    """A `vj render` (kind "render", with or without a timeline), a `vj replay --fps` (kind "replay") or a `vj replay`
    of the live frame sequence (kind "live-replay": frames are the recording's, `fps` its rate).

    File names are relative to the job's bundle (`Bundle`), which every worker unpacks into a folder of its own;
    `preset` may instead name a built-in or installed preset, and `audio` may be "demo"."""

    kind: str
    render_cfg: RenderConfig
    audio_cfg: AudioConfig
    fps: float
    n_frames: int
    audio: str = ""
    preset: str = ""
    timeline: str = ""
    start_s: float = 0.0
    duration_s: float | None = None
    session: str = ""
    codec: str = "h264"

    def digest(self, bundle: dict[str, bytes]) -> str:
        """sha256 of the settings and of every input file: equal digests render equal frames."""
        h = hashlib.sha256()
        h.update(json.dumps({"format": FORMAT, **dataclasses.asdict(self)}, sort_keys=True, default=str).encode())
        for name in sorted(bundle):
            h.update(name.encode() + b"\0" + hashlib.sha256(bundle[name]).digest())
        return h.hexdigest()


def _add(bundle: dict[str, bytes], name: str, path: Path) -> str:
    bundle[name] = path.read_bytes()
    return name


def _add_shader(bundle: dict[str, bytes], fs: Path) -> None:
    """An ISF shader with what it reads beside it: its .vs and the images it IMPORTs."""
    _add(bundle, f"shaders/{fs.name}", fs)
    vs = fs.with_suffix(".vs")
    if vs.is_file():
        _add(bundle, f"shaders/{vs.name}", vs)
    try:
        shader = load_isf(fs)
    except (ISFError, OSError):
        return                # the worker's chain shows its error, as on one machine
    for _, image in shader.imported:
        if image.is_file() and image.resolve().is_relative_to(fs.parent.resolve()):
            _add(bundle, f"shaders/{image.resolve().relative_to(fs.parent.resolve()).as_posix()}", image)


def _add_preset_files(bundle: dict[str, bytes], folder: str, preset_path: Path) -> None:
    """What a preset reads besides itself: the shaders it takes from ./shaders/ and the files its [model] names beside
    it (checkpoints, weights), so that a worker finds them as beside its copy."""
    try:
        preset = load_preset(str(preset_path))
    except PresetError:        # the worker's own load reports a broken preset, with its line
        return
    for e in preset.effects:
        local = Path.cwd() / "shaders" / f"{e.shader}.fs"
        if "/" not in e.shader and local.is_file():
            _add_shader(bundle, local)
    settings = [preset.model_settings]
    if isinstance(preset.model_settings.get("source_settings"), dict):
        settings.append(preset.model_settings["source_settings"])
    for s in settings:
        for k in MODEL_FILE_SETTINGS:
            v = s.get(k)
            if isinstance(v, str) and v and not v.startswith("catalog:") and not Path(v).is_absolute():
                beside = preset_path.parent / v
                if beside.is_file():
                    _add(bundle, f"{folder}/{v}", beside)


def preset_entry(bundle: dict[str, bytes], spec: str, folder: str = "presets") -> str:
    """A preset (a name in the preset folders or a file) goes into the bundle as a file, with the files its model
    names beside it and the shaders it uses from the current folder's shaders/ (the workers have vj's own)."""
    path = find_preset(spec)
    _add_preset_files(bundle, folder, path)
    return _add(bundle, f"{folder}/{path.name}", path)


def render_job(audio: str, preset: str, render_cfg: RenderConfig, audio_cfg: AudioConfig, n_frames: int, *,
               start_s: float = 0.0, duration_s: float | None = None,
               timeline: str | Path | None = None) -> tuple[Job, dict[str, bytes]]:
    bundle: dict[str, bytes] = {}
    audio_name = audio if audio == "demo" else _add(bundle, f"audio/{Path(audio).name}", Path(audio))
    timeline_name = ""
    if timeline is not None:
        tl = Path(timeline)
        # Presets a timeline names by file are looked for beside it: those go along.
        for other in sorted(tl.parent.glob("*.toml")):
            if other != tl:
                _add(bundle, f"timeline/{other.name}", other)
                _add_preset_files(bundle, "timeline", other)
        timeline_name = _add(bundle, f"timeline/{tl.name}", tl)
    job = Job("render", render_cfg, audio_cfg, render_cfg.fps, n_frames, audio=audio_name,
              preset=preset_entry(bundle, preset), timeline=timeline_name, start_s=start_s, duration_s=duration_s)
    return job, bundle


def replay_job(folder: str | Path, render_cfg: RenderConfig, audio_cfg: AudioConfig, fps: float, n_frames: int,
               codec: str = "h264", live: bool = False) -> tuple[Job, dict[str, bytes]]:
    """A session folder (vj.session) goes whole: it holds its own audio, presets and shader copies. `live`: the
    live frame sequence at the recording's rate `fps`."""
    folder = Path(folder)
    bundle = {f"session/{p.relative_to(folder).as_posix()}": p.read_bytes()
              for p in sorted(folder.rglob("*")) if p.is_file()}
    job = Job("live-replay" if live else "replay", render_cfg, audio_cfg, fps, n_frames, session="session",
              codec=codec)
    return job, bundle
