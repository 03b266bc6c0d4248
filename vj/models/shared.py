"""Compiled networks kept for the process, one for each distinct network, because torch never frees a trace.

`torch.jit.trace` (and `script`) registers every traced module in torch's process-wide compilation unit,
which only grows: the graph, the constants it captured (weights), and its executor's buffers stay until the
process ends, whatever vj releases. A generator that traced its own network each time a scene loaded grew a
show by 10-40 MB a scene change. The generators build each compiled network once per distinct network
(`SHARED.get(key, build)`, the key saying what the network computes) and reuse it; the number of distinct
networks a show plays then bounds that memory.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any, Callable, Hashable

import torch


class Shared:
    """key -> what `build()` returned the first time that key was asked for, for the process."""

    def __init__(self) -> None:
        self._items: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        """The value for `key`, built now if it is new (under a lock: two loader threads build it once)."""
        with self._lock:
            if key not in self._items:
                self._items[key] = build()
            return self._items[key]

    def __len__(self) -> int:
        return len(self._items)


SHARED = Shared()


def digest(module: torch.nn.Module) -> str:
    """A hash of a module's tensors with their names, dtypes and shapes: equal for equal numbers. ~0.1 s for
    120 MB of weights (a 1024 px StyleGAN2); on CUDA it copies them to the host once."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in module.state_dict().items():
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
