"""The deterministic, dt-correct latent walk shared by the generators: keyframes, bass push, onset kicks."""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from vj.audio.features import Features
from vj.params import Param

_KEYFRAME, _BASS, _KICK = 0, 1, 2   # tags that keep the seeded streams apart
KICK_SPEED = 0.5                    # keyframes/s of extra walk speed per unit of kick envelope
SEED_FADE_S = 1.5                   # a change of sequence seed crossfades over this long


@lru_cache(maxsize=256)
def _unit_normal(base_seed: int, seed: int, tag: int, k: int, z_dim: int) -> np.ndarray:
    """(z_dim,) float64 normal vector scaled to length sqrt(z_dim), the same for the same arguments."""
    words = [w & 0xFFFFFFFF for w in (base_seed, seed, tag, k)]
    v = np.random.default_rng(words).standard_normal(z_dim)
    v *= math.sqrt(z_dim) / max(float(np.linalg.norm(v)), 1e-9)
    v.setflags(write=False)
    return v


def _impulse_decay(dt_s: float, attack_s: float, release_s: float) -> tuple[float, float, float]:
    """Exact one-step propagation of the kick filter over dt_s.

    The filter is u' = -u / release_s (the impulse store) and e' = (u - e) / attack_s (the envelope
    that follows it). Returns (a, r, g) so that e(t+dt) = a*e + g*u and u(t+dt) = r*u: exact for any
    dt, so the envelope is identical at any frame rate.
    """
    a = math.exp(-dt_s / attack_s)
    r = math.exp(-dt_s / release_s)
    if abs(release_s - attack_s) < 1e-9:
        g = dt_s / attack_s * a
    else:
        g = (r - a) / (1.0 - attack_s / release_s)
    return a, r, g


def smoothstep(x: float) -> float:
    """0..1 -> 0..1 with zero slope at both ends (x is clamped)."""
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def slerp(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """The point k (0..1) of the way from a to b along the great circle, its length lerped from |a| to |b|.

    k = 0 gives a and k = 1 gives b exactly; nearly parallel or opposite vectors fall back to a lerp.
    """
    if k <= 0.0:
        return np.array(a, dtype=np.float64)
    if k >= 1.0:
        return np.array(b, dtype=np.float64)
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na < 1e-12 or nb < 1e-12:
        return (1.0 - k) * a + k * b
    ua, ub = a / na, b / nb
    theta = math.acos(min(1.0, max(-1.0, float(ua @ ub))))
    if math.sin(theta) < 1e-6:
        return (1.0 - k) * a + k * b
    u = (math.sin((1.0 - k) * theta) * ua + math.sin(k * theta) * ub) / math.sin(theta)
    return u * ((1.0 - k) * na + k * nb)


def walk_params(speed: float) -> list[Param]:
    """The latent-walk params every walking generator declares."""
    return [
        Param("/model/speed", speed, 0.0, 2.0, unit="keyframe/s", smoothing_s=0.5,
              description="walk speed through latent space in silence"),
        Param("/model/level_speed", 0.3, 0.0, 2.0, unit="keyframe/s",
              description="extra walk speed at full loudness"),
        Param("/model/bass_push", 0.5, 0.0, 2.0, unit="keyframe",
              description="how far full bass pushes the latent along a fixed direction"),
        Param("/model/onset_kick", 0.6, 0.0, 2.0,
              description="size of the kick each onset gives the walk"),
        Param("/model/kick_attack_s", 0.03, 0.001, 1.0, unit="s", description="rise time of an onset kick"),
        Param("/model/kick_release_s", 0.5, 0.01, 4.0, unit="s", description="decay time of an onset kick"),
        Param("/model/seed", 0, 0, 9999, kind="int",
              description="which sequence of keyframe latents the walk goes through"),
    ]


class LatentWalk:
    """A walk through latent space along Catmull-Rom splines over seeded keyframes z_k = normal(seed, k).

    All state is floats updated by `step`, so the same sequence of inputs gives the same latents,
    and speeds, envelopes and fades are in seconds so the result does not depend on the frame rate.
    """

    def __init__(self, z_dim: int, base_seed: int = 0, keyframes: np.ndarray | None = None, loop: bool = True):
        """`keyframes`: (K, z_dim) latents to walk through instead of the seeded sequence (every /model/seed
        then walks them; the seed still picks the bass and kick directions). With `loop` the path is closed:
        after the last keyframe it curves back into the first, so keyframe K is keyframe 0 and the spline is
        smooth across the seam; without, the walk stops on the last keyframe."""
        if z_dim < 1:
            raise ValueError(f"z_dim must be at least 1, got {z_dim}")
        self.z_dim = z_dim
        self.base_seed = int(base_seed)
        self.keyframes: np.ndarray | None = None
        if keyframes is not None:
            kf = np.asarray(keyframes, dtype=np.float64)
            if kf.ndim != 2 or kf.shape[0] < 1 or kf.shape[1] != z_dim:
                raise ValueError(f"keyframes must be (K, {z_dim}) latents, got shape {kf.shape}")
            if not np.all(np.isfinite(kf)) or np.any(np.linalg.norm(kf, axis=1) == 0):
                raise ValueError("keyframes must be finite, non-zero latents")
            self.keyframes = kf
        self.loop = bool(loop)
        self.reset()

    def reset(self) -> None:
        self.pos = 0.0                                  # keyframes walked
        self.kick_store = np.zeros(self.z_dim + 1)      # (z_dim + 1,) u: impulses; last entry scalar speed kick
        self.kick_env = np.zeros(self.z_dim + 1)        # (z_dim + 1,) e: the envelope that follows u
        self.onsets = 0                                 # onsets counted so far (picks each kick direction)
        self.seed: int | None = None
        self._prev_seed = 0
        self._fade = 1.0                                # 0..1 through a seed crossfade; 1 = done
        self._last_onset: tuple[bool, float] = (False, math.nan)
        self.current_z: np.ndarray | None = None        # (z_dim,) the latent the last step returned
        self._morph_from: np.ndarray | None = None      # (z_dim,) where a preset morph starts
        self._morph_s = 0.0                             # duration of that morph
        self._morph_elapsed_s: float | None = None      # None until the first step after `morph_from`

    def morph_from(self, z: np.ndarray, duration_s: float) -> None:
        """Start from latent z and slerp to the walk's own latent over duration_s seconds (a preset morph).

        The morph starts at the time of the next `step`: that step returns z itself, and each later one
        moves smoothstep(elapsed / duration_s) of the way along the great circle to the walk's latent,
        so the result depends only on the sum of the dt's, not on the frame rate.
        """
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        if z.shape != (self.z_dim,):
            raise ValueError(f"morph latent has {z.size} dims, expected {self.z_dim}")
        if duration_s <= 0.0:
            self._morph_from = None
            return
        self._morph_from, self._morph_s, self._morph_elapsed_s = z.copy(), float(duration_s), None

    def keyframe(self, seed: int, k: int) -> np.ndarray:
        if self.keyframes is not None:
            n = len(self.keyframes)
            return self.keyframes[k % n if self.loop else min(max(k, 0), n - 1)]
        return _unit_normal(self.base_seed, seed, _KEYFRAME, k, self.z_dim)

    def bass_direction(self, seed: int) -> np.ndarray:
        return _unit_normal(self.base_seed, seed, _BASS, 0, self.z_dim)

    def path(self, seed: int, pos: float) -> np.ndarray:
        """(z_dim,) point of the spline through the keyframes of `seed` at `pos`, length sqrt(z_dim)."""
        if self.keyframes is not None and not self.loop:
            pos = min(pos, len(self.keyframes) - 1.0)        # an open path ends on its last keyframe
        k = math.floor(pos)
        f = pos - k
        p0, p1, p2, p3 = (self.keyframe(seed, k + i) for i in (-1, 0, 1, 2))
        f2, f3 = f * f, f * f * f
        z = 0.5 * (2.0 * p1 + (p2 - p0) * f + (2.0 * p0 - 5.0 * p1 + 4.0 * p2 - p3) * f2
                   + (3.0 * p1 - p0 - 3.0 * p2 + p3) * f3)
        return z * (math.sqrt(self.z_dim) / max(float(np.linalg.norm(z)), 1e-9))

    def step(self, dt_s: float, *, seed: int, speed: float, level: float = 0.0, level_speed: float = 0.0,
             bass: float = 0.0, bass_push: float = 0.0, onset: bool = False, onset_t_s: float = 0.0,
             onset_kick: float = 0.0, attack_s: float = 0.03, release_s: float = 0.4) -> np.ndarray:
        """Advance by dt_s seconds and return the (z_dim,) float64 latent for the new frame.

        speed and level_speed are in keyframes/s; bass_push is how far full bass moves the latent,
        in keyframe lengths; onset_kick is the size of each onset's impulse into the kick envelope.
        An onset is counted once even when the same Features snapshot arrives on several frames
        (same `onset_t_s` on consecutive frames).
        """
        dt_s = max(float(dt_s), 0.0)
        seed = int(seed)
        if self.seed is None:
            self.seed = self._prev_seed = seed
        elif seed != self.seed:
            self._prev_seed, self.seed, self._fade = self.seed, seed, 0.0

        was_onset, last_t_s = self._last_onset
        if onset and not (was_onset and onset_t_s == last_t_s):
            self.onsets += 1
            kick_dir = _unit_normal(self.base_seed, seed, _KICK, self.onsets, self.z_dim)
            self.kick_store[:-1] += onset_kick * kick_dir
            self.kick_store[-1] += onset_kick
        self._last_onset = (bool(onset), float(onset_t_s))

        a, r, g = _impulse_decay(dt_s, max(attack_s, 1e-3), max(release_s, 1e-3))
        env_before = float(self.kick_env[-1])
        self.kick_env = a * self.kick_env + g * self.kick_store
        self.kick_store = r * self.kick_store
        kick_area = 0.5 * (env_before + float(self.kick_env[-1])) * dt_s   # trapezoid: envelope * s

        self.pos += (speed + level_speed * level) * dt_s + KICK_SPEED * kick_area
        self._fade = min(1.0, self._fade + dt_s / SEED_FADE_S)

        z = self.path(self.seed, self.pos)
        if self._fade < 1.0:
            w = smoothstep(self._fade)
            z = (1.0 - w) * self.path(self._prev_seed, self.pos) + w * z
            z *= math.sqrt(self.z_dim) / max(float(np.linalg.norm(z)), 1e-9)
        z = z + bass_push * bass * self.bass_direction(self.seed) + self.kick_env[:-1]
        if self._morph_from is not None:
            self._morph_elapsed_s = 0.0 if self._morph_elapsed_s is None else self._morph_elapsed_s + dt_s
            x = self._morph_elapsed_s / self._morph_s
            z = slerp(self._morph_from, z, smoothstep(x))
            if x >= 1.0:
                self._morph_from = None
        self.current_z = z
        return z

    def advance(self, values: Mapping[str, Any], features: Features, dt_s: float) -> np.ndarray:
        """`step` driven by the coerced values of `walk_params()` (by path) and one Features snapshot."""
        return self.step(
            dt_s, seed=values["/model/seed"], speed=values["/model/speed"], level=features.level,
            level_speed=values["/model/level_speed"], bass=features.bass, bass_push=values["/model/bass_push"],
            onset=features.onset, onset_t_s=features.t_s, onset_kick=values["/model/onset_kick"],
            attack_s=values["/model/kick_attack_s"], release_s=values["/model/kick_release_s"])
