"""A folder of video clips and the seeded order in which beat-synced cutting visits them.

`find_clips(folder)` lists the playable clips (probed with `VideoSource`; a broken file is skipped
with a warning, a folder with none left is a `VideoError`). `CutPlan(seed, durations_s)` says, as
a pure function of the cut number, which clip the k-th cut shows and where in it the cut starts: each
round visits every clip once in a seeded shuffle, never the same clip twice in a row.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from vj.video.source import VideoError, VideoInfo, VideoSource

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts",
                              ".ogv", ".wmv", ".flv", ".dv", ".mxf", ".gif"})
START_MARGIN_S = 1.0                  # a random start leaves at least this much of the clip before it loops


def find_clips(folder: str | os.PathLike) -> list[VideoInfo]:
    """The playable videos in `folder` (not recursive), sorted by file name."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise VideoError(f"clip folder not found: {folder}")
    candidates = sorted(p for p in folder.iterdir()
                        if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file() and not p.name.startswith("."))
    clips, failures = [], []
    for p in candidates:
        try:
            with VideoSource(p) as src:
                clips.append(src.info)
        except VideoError as exc:
            failures.append(str(exc))
            log.warning("skipping clip: %s", exc)
    if not clips:
        why = f"; {failures[0]}" if failures else f" (looked for {', '.join(sorted(VIDEO_EXTENSIONS))})"
        raise VideoError(f"{folder}: no playable video in the folder{why}")
    return clips


class CutPlan:
    """Which clip, and from which media time, the k-th cut shows: deterministic in (seed, k)."""

    def __init__(self, seed: int, durations_s: list[float]):
        if not durations_s:
            raise ValueError("a cut plan needs at least one clip")
        self.seed = int(seed)
        self.durations_s = [float(d) for d in durations_s]
        self._rounds: dict[int, list[int]] = {}

    @property
    def n_clips(self) -> int:
        return len(self.durations_s)

    def _round(self, r: int) -> list[int]:
        """The seeded shuffle of clip indices for round r; its first clip differs from round r-1's last."""
        order = self._rounds.get(r)
        if order is None:
            order = _shuffle(self.seed, r, self.n_clips)
            if self.n_clips == 2:               # two clips: the same order every round alternates them
                order = _shuffle(self.seed, 0, 2)
            elif r > 0 and self.n_clips > 2 and order[0] == _shuffle(self.seed, r - 1, self.n_clips)[-1]:
                order[0], order[1] = order[1], order[0]
            if len(self._rounds) >= 8:          # keep a few recent rounds; older ones are recomputed if asked for
                self._rounds.pop(next(iter(self._rounds)))
            self._rounds[r] = order
        return order

    def clip(self, k: int) -> int:
        """Clip index shown after cut k (k = 0: the first clip of the show)."""
        return self._round(k // self.n_clips)[k % self.n_clips]

    def start_s(self, k: int, random_start: bool = True) -> float:
        """Media time cut k starts at: 0, or a seeded point leaving START_MARGIN_S before the clip's end."""
        if k == 0 or not random_start:
            return 0.0
        span = max(self.durations_s[self.clip(k)] - START_MARGIN_S, 0.0)
        return float(np.random.default_rng([self.seed, k, 1]).random()) * span


def _shuffle(seed: int, r: int, n: int) -> list[int]:
    return [int(i) for i in np.random.default_rng([seed, r]).permutation(n)]
