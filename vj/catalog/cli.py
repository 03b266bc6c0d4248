"""`vj models list | get NAME | path NAME | verify [NAME]`: the catalog from the command line (prints)."""

from __future__ import annotations

from pathlib import Path

from vj.catalog.download import mb
from vj.catalog.entries import get_entry
from vj.catalog.store import FetchError, fetch, model_path, models_dir, status, verify


def run_models(action: str, name: str | None, folder: Path | None) -> int:
    """Exit status: 0 done, 1 a model missing or failing its check (the reason printed)."""
    folder = models_dir(folder)
    if action == "list":
        rows = status(folder)
        here = sum(1 for _, st in rows if st == "present")
        print(f"models folder: {folder} ({here} of {len(rows)} present; `vj models get NAME` fetches one)")
        for entry, st in rows:
            size = mb(entry.size_bytes) if entry.size_bytes else "size ?"
            live = "  live on a laptop" if entry.live_laptop else ""
            licence = entry.licence.split(" (")[0].split(";")[0]      # the name; `vj models path` users read more
            print(f"  {entry.name:<30} {st:<16} {entry.kind:<12} {entry.resolution:>5} px  {size:>9}  "
                  f"{licence}{live}")
        return 0
    if action == "get":
        path = fetch(name, folder)
        print(path)
        return 0
    if action == "path":
        path = model_path(get_entry(name), folder)
        if not path.is_file():
            raise FetchError(f"{name} is not downloaded: run `vj models get {name}`")
        print(path)
        return 0
    if action == "verify":
        names = [name] if name else [e.name for e, st in status(folder) if st == "present"]
        if not names:
            print(f"no models downloaded in {folder}")
            return 0
        bad = 0
        for n in names:
            check = verify(n, folder)
            bad += not check.ok
            print(f"{n}: {check.line}")
        return 1 if bad else 0
    raise FetchError(f"unknown action {action!r}")
