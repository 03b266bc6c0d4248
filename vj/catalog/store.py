"""The models folder: where catalog models live, fetching one safely, checking what is there.

A model is at `<models dir>/<name>/<file as published>`, and only ever complete and checked: `fetch` downloads
to `<file>.part` (resumable), checks the sha256 where the catalog knows it, the size where it knows that, and
always that our own loader reads the file as the kind the catalog says, and only then moves it into place.
A file that fails a check is deleted, with one line saying why. Two fetches of one model (two shows, two
terminals) take turns on a lock file: the second finds the model there and returns at once.

The folder: `--models-dir`, else `VJ_MODELS`, else the platform's cache folder (`$XDG_CACHE_HOME/vj/models`,
`~/.cache/vj/models` on Linux). `VJ_MODELS_MIRROR` (a base URL) replaces the publishers' hosts: the path of
the publisher's URL is kept under it, for a studio's mirror and for the tests.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping
from urllib.parse import urlsplit

from vj.catalog.download import DownloadError, Progress, download, mb, sha256_of
from vj.catalog.entries import CatalogEntry, CatalogError, get_entry, load_catalog

log = logging.getLogger(__name__)

CATALOG_PREFIX = "catalog:"


class FetchError(RuntimeError):
    """A catalog model that could not be fetched or does not check; one line saying why."""


def models_dir(override: str | os.PathLike | None = None) -> Path:
    """The models folder (not created here)."""
    if override:
        return Path(override).expanduser()
    if os.environ.get("VJ_MODELS"):
        return Path(os.environ["VJ_MODELS"]).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "vj" / "models"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "vj" / "models"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "vj" / "models"


def source_url(entry: CatalogEntry) -> str:
    """The URL to fetch from: the publisher's, or its path under VJ_MODELS_MIRROR."""
    mirror = os.environ.get("VJ_MODELS_MIRROR", "").strip()
    if not mirror:
        return entry.url
    return mirror.rstrip("/") + urlsplit(entry.url).path


def model_path(entry: CatalogEntry, folder: Path | None = None) -> Path:
    return (folder or models_dir()) / entry.name / entry.file


@dataclass(frozen=True)
class Check:
    """What checking a file found: `ok`, and one line (what it is, or what is wrong)."""

    ok: bool
    line: str


def check_loads(entry: CatalogEntry, path: Path) -> Check:
    """Whether our own loader reads `path` as the entry's kind (and resolution, for generators)."""
    try:
        if entry.kind in ("googlenet", "inception_v3"):
            from vj.models.deepdream.backbone import BackboneError, load_googlenet, load_inception_v3
            googlenet = entry.kind == "googlenet"
            try:
                (load_googlenet if googlenet else load_inception_v3)(path)
            except BackboneError as exc:
                return Check(False, _strip_path(str(exc), path))
            return Check(True, f"a torchvision {'GoogLeNet' if googlenet else 'Inception-v3'} state dict")
        from vj.models.stylegan.load import CheckpointError, load_generator
        try:
            loaded = load_generator(path)
        except CheckpointError as exc:
            return Check(False, _strip_path(str(exc), path))
        family = loaded.family
        res = int(loaded.kwargs.get("img_resolution", 0))
        if not family.startswith(entry.kind):
            return Check(False, f"a {family} network, the catalog says {entry.kind}")
        if res and res != entry.resolution:
            return Check(False, f"a {res} px network, the catalog says {entry.resolution} px")
        return Check(True, f"a {family} network, {res or '?'} px")
    except (OSError, RuntimeError, ValueError) as exc:       # a loader's unexpected failure is still a failure
        return Check(False, f"{type(exc).__name__}: {exc}")


def _strip_path(message: str, path: Path) -> str:
    return message.removeprefix(f"{path}: ")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (a lock file), across processes and threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def fetch(name: str, folder: Path | None = None, *, progress: bool | Callable[..., None] = True,
          stall_s: float | None = None, retries: int | None = None) -> Path:
    """The model's file, downloaded and checked first if it is not there yet. FetchError says why not."""
    try:
        entry = get_entry(name)
    except CatalogError as exc:
        raise FetchError(str(exc)) from None
    folder = folder or models_dir()
    dest = model_path(entry, folder)
    try:
        with _locked(dest.with_name(dest.name + ".lock")):
            if dest.is_file():
                return dest
            part = dest.with_name(dest.name + ".part")
            url = source_url(entry)
            bar = Progress(entry.name, entry.size_bytes) if progress is True else (progress or None)
            kw = {k: v for k, v in (("stall_s", stall_s), ("retries", retries)) if v is not None}
            try:
                digest = download(url, part, expected_size=entry.size_bytes, progress=bar, **kw)
            except DownloadError as exc:
                if not exc.keep_part:
                    part.unlink(missing_ok=True)
                raise FetchError(f"{entry.name}: {exc}") from None
            check = _verify(entry, part, digest)
            if not check.ok:
                part.unlink(missing_ok=True)
                raise FetchError(f"{entry.name}: {url}: {check.line}; the file was deleted")
            os.replace(part, dest)
    except OSError as exc:       # the folder itself (permissions, a full disk while locking or moving)
        raise FetchError(f"{entry.name}: cannot write {dest.parent}: {exc.strerror or exc}") from None
    log.info("%s: fetched to %s", entry.name, dest)
    return dest


def _verify(entry: CatalogEntry, path: Path, digest: str) -> Check:
    """Whether the file is the entry's: ok with what the loader found, else why not (the file loads once)."""
    size = path.stat().st_size
    if entry.size_bytes and size != entry.size_bytes:
        return Check(False, f"{size} bytes, the catalog says {entry.size_bytes} (truncated or another file)")
    if entry.hash_matches(digest) is False:
        want = entry.sha256 or entry.sha256_prefix + "..."
        return Check(False, f"sha256 {digest[:16]}... does not match the catalog's {want[:16]}...")
    loads = check_loads(entry, path)
    return loads if loads.ok else Check(False, f"not a {entry.kind} network: {loads.line}")


def verify(name: str, folder: Path | None = None) -> Check:
    """Check a model already in the folder: size, hash (the whole file is read) and that it loads."""
    entry = get_entry(name)
    path = model_path(entry, folder)
    if not path.is_file():
        return Check(False, f"not downloaded (vj models get {name})")
    digest = sha256_of(path)
    check = _verify(entry, path, digest)
    return Check(True, f"ok: {check.line}, sha256 {digest[:16]}...") if check.ok else check


def resolve(value: str, base_dir: str | os.PathLike | None = None, *, fetch_missing: bool = False,
            folder: Path | None = None) -> str:
    """A preset's file setting: "catalog:NAME" -> the model's path (FetchError naming the command that
    fetches it when it is missing, or fetching it with `fetch_missing`); anything else is returned as is."""
    if not value.startswith(CATALOG_PREFIX):
        return value
    name = value[len(CATALOG_PREFIX):].strip()
    try:
        entry = get_entry(name)
    except CatalogError as exc:
        raise FetchError(str(exc)) from None
    path = model_path(entry, folder)
    if path.is_file():
        return str(path)
    if fetch_missing:
        return str(fetch(name, folder))
    size = f" ({mb(entry.size_bytes)})" if entry.size_bytes else ""
    raise FetchError(f"catalog model {name} is not downloaded{size}: run `vj models get {name}` "
                     f"(or start with --fetch)")


def preset_models(model_settings: Mapping) -> list[str]:
    """The catalog names a preset's [model] settings use ("catalog:NAME" values, source_settings included)."""
    out = []
    for value in model_settings.values():
        if isinstance(value, Mapping):
            out += preset_models(value)
        elif isinstance(value, str) and value.startswith(CATALOG_PREFIX):
            out.append(value[len(CATALOG_PREFIX):].strip())
    return out


def status(folder: Path | None = None) -> list[tuple[CatalogEntry, str]]:
    """Every catalog entry with where it stands here: 'present', 'partial N MB' or 'missing'."""
    out = []
    for entry in load_catalog().values():
        path = model_path(entry, folder)
        part = path.with_name(path.name + ".part")
        if path.is_file():
            out.append((entry, "present"))
        elif part.is_file():
            out.append((entry, f"partial {mb(part.stat().st_size)}"))
        else:
            out.append((entry, "missing"))
    return out

