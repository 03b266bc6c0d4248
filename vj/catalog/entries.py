"""The model catalog: released networks as data (catalog.toml beside this file), read and checked.

Each `[[model]]` names one file a publisher released: where it is (the publisher's URL), how big it is,
what it is (the loader `kind` that reads it), its resolution, licence, and a sha256 where the publisher
states one (torchvision's file names carry the first hex digits of theirs: `sha256_prefix`). The catalog is
data, never code: `load_catalog` refuses an entry with a missing field, a bad name, a URL that is not
https or does not end in the file's name, or a kind no loader reads, naming the file and the entry.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

CATALOG_FILE = Path(__file__).with_name("catalog.toml")     # $VJ_CATALOG: another (a studio's own)
KINDS = ("stylegan2", "stylegan3", "googlenet", "inception_v3")   # store.check_loads has a loader for each
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]*$")
REQUIRED = ("name", "kind", "file", "url", "resolution", "licence", "description", "source")


class CatalogError(ValueError):
    """The catalog file or a name in it is wrong; one line saying which and why."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    kind: str                 # the loader: stylegan2, stylegan3, googlenet, inception_v3
    file: str                 # file name as published
    url: str                  # the publisher's URL
    resolution: int           # px: generator output, or the classifier's training input
    licence: str
    description: str
    source: str               # where the URL was taken from
    size_bytes: int = 0       # 0: the publisher does not state it
    sha256: str = ""          # full hex digest where the publisher states it
    sha256_prefix: str = ""   # the first hex digits (torchvision's file names)
    dataset: str = ""
    conditional: bool = False
    live_laptop: bool = False  # small enough to play live on a laptop GPU

    def hash_matches(self, digest: str) -> bool | None:
        """True/False when the catalog knows (part of) the hash, None when it does not."""
        if self.sha256:
            return digest == self.sha256
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix)
        return None


def load_catalog(path: Path | None = None) -> dict[str, CatalogEntry]:
    """The catalog by name (`path`, else $VJ_CATALOG, else the one that ships); CatalogError naming the file and
    entry for anything incomplete or malformed."""
    path = path or Path(os.environ.get("VJ_CATALOG") or CATALOG_FILE)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{path}: {exc}") from None
    out: dict[str, CatalogEntry] = {}
    for i, raw in enumerate(data.get("model", [])):
        where = f"{path.name}: model {raw.get('name') or i + 1}"
        missing = [k for k in REQUIRED if k not in raw or raw[k] in ("", None)]
        if missing:
            raise CatalogError(f"{where}: missing {', '.join(missing)}")
        unknown = set(raw) - set(CatalogEntry.__dataclass_fields__)
        if unknown:
            raise CatalogError(f"{where}: unknown field {', '.join(sorted(unknown))}")
        try:
            entry = CatalogEntry(**raw)
        except TypeError as exc:
            raise CatalogError(f"{where}: {exc}") from None
        _check(entry, where)
        if entry.name in out:
            raise CatalogError(f"{where}: the name is used twice")
        out[entry.name] = entry
    if not out:
        raise CatalogError(f"{path}: no [[model]] entries")
    return out


def _check(e: CatalogEntry, where: str) -> None:
    if not _NAME.match(e.name):
        raise CatalogError(f"{where}: name must be lowercase letters, digits and '-'")
    if e.kind not in KINDS:
        raise CatalogError(f"{where}: kind {e.kind!r} is not one of {', '.join(KINDS)}")
    parts = urlsplit(e.url)
    if parts.scheme != "https" or not parts.netloc or not parts.path.endswith("/" + e.file):
        raise CatalogError(f"{where}: url must be https and end in /{e.file}: {e.url}")
    if "/" in e.file or e.file.startswith("."):
        raise CatalogError(f"{where}: file must be a plain file name: {e.file!r}")
    if not (isinstance(e.resolution, int) and 16 <= e.resolution <= 4096):
        raise CatalogError(f"{where}: resolution must be a whole number of pixels, got {e.resolution!r}")
    if not (isinstance(e.size_bytes, int) and e.size_bytes >= 0):
        raise CatalogError(f"{where}: size_bytes must be a whole number >= 0")
    for field, length in (("sha256", 64), ("sha256_prefix", None)):
        value = getattr(e, field)
        if value and (not _HEX.match(value) or (length and len(value) != length) or len(value) > 64):
            raise CatalogError(f"{where}: {field} must be lowercase hex" + (f" of {length} digits" if length else ""))
    if not urlsplit(e.source).scheme.startswith("http"):
        raise CatalogError(f"{where}: source must be the URL of the page the entry was taken from")


def get_entry(name: str, catalog: dict[str, CatalogEntry] | None = None) -> CatalogEntry:
    """One entry by name; CatalogError listing close names when there is none."""
    catalog = load_catalog() if catalog is None else catalog
    entry = catalog.get(name)
    if entry is None:
        near = [n for n in catalog if name in n or n in name][:5]
        hint = f"; did you mean {', '.join(near)}?" if near else "; `vj models list` shows them"
        raise CatalogError(f"no model {name!r} in the catalog{hint}")
    return entry
