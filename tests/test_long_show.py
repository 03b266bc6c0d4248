"""A long show: 64 scene changes in a live engine leave memory, GL objects, threads and files where they were."""

from __future__ import annotations

import gc
import os
import time
import weakref
from pathlib import Path

import numpy as np
import torch

from test_engine import ctx  # noqa: F401  (fixture: a headless Mesa EGL context)
from video_synth import write_index_video
from vj.audio.demo import demo_track
from vj.config import AudioConfig, RenderConfig
from vj.engine import Engine
from vj.params import Change
from vj.presets import PRESET_DIR
from vj.soak import gl_objects, rss_mb

# Model frames at 160x90. Each CPPN, DeepDream and StyleGAN generator used to leave its own TorchScript traces
# behind in torch's process-wide compilation unit, for good: 485 MB over these 60 changes on the shipped
# scenes alone, against 19 MB now.
CFG = RenderConfig(width_px=160, height_px=96, fps=30.0, model_width_px=160, model_height_px=90)
FIXTURES = Path(__file__).parent / "fixtures"
# Every model kind that runs here: the shipped scenes (CPPN, plasma, DeepDream), a StyleGAN3 network that
# NVlabs' code wrote, and a video clip.
SCENES = ("default", "faces", "nebula", "flash", "clip", "ember", "dream", "prism")
EXTRA = {"faces": f'[model]\nname = "stylegan"\ncheckpoint = "{FIXTURES / "original" / "sg3-t-16.pkl"}"\n'
                  '[[effects]]\nshader = "bloom"\n',
         "clip": '[model]\nname = "video"\npath = "clip.mp4"\n[[effects]]\nshader = "mirror"\n'}
WARM_UP, CHANGES = 40, 64
# After warm-up, what may a scene change leave behind? Nothing, by design. RSS still creeps while the
# allocator settles (it levelled off after ~90 changes here: 34 MB over these 64, malloc_trim or not).
# One leaked trace a change, the old way, was 8 MB a change on average over these scenes: the bound is a
# quarter of that and 4x what was measured.
RSS_PER_CHANGE_MB = 2.0


def test_sixty_four_scene_changes_leave_nothing_behind(ctx, tmp_path):  # noqa: F811
    write_index_video(tmp_path / "clip.mp4")
    for name, text in EXTRA.items():
        (tmp_path / f"{name}.toml").write_text(f'name = "{name}"\n{text}')
    acfg = AudioConfig()
    engine = Engine(ctx, CFG, acfg, live=True, preset_dirs=[tmp_path, PRESET_DIR])
    audio = demo_track(acfg.sample_rate_hz, duration_s=20.0).mean(axis=1).astype(np.float32)
    spf = acfg.sample_rate_hz // 30
    clock = {"i": 0}

    def step() -> None:
        i = clock["i"]
        a0 = (i * spf) % (len(audio) - spf)
        engine.step_live(audio[a0:a0 + spf], (i + 1) / 30, 1 / 30)
        clock["i"] = i + 1
        time.sleep(0.002)                 # the model worker and the loader are threads: let them run

    def change(name: str) -> None:
        """Load a scene over the command queue, as OSC does, and play until it has landed and morphed in."""
        engine.changes.put(Change("/cmd/preset/load", name, "osc"))
        deadline = time.monotonic() + 120          # a wait, not a bound: a slow machine only takes longer
        while time.monotonic() < deadline:
            step()
            if (engine.preset.path is not None and engine.preset.path.stem == name and engine.loading is None
                    and engine._morph is None and engine._pending is None):
                break
        assert engine.preset.path.stem == name, f"{name} never landed"
        for _ in range(5):
            step()

    def measure() -> dict:
        gc.collect()
        return {"rss_mb": rss_mb(), "threads": len(os.listdir("/proc/self/task")),
                "fds": len(os.listdir("/proc/self/fd")), "gl": gl_objects(),
                "traces": len(torch.jit._state._python_cu.get_functions())}

    try:
        engine.load_preset(SCENES[0])
        for n in range(WARM_UP):
            change(SCENES[(n + 1) % len(SCENES)])
        before = measure()
        generators = []
        for n in range(WARM_UP, WARM_UP + CHANGES):
            change(SCENES[(n + 1) % len(SCENES)])
            generators.append(weakref.ref(engine.generator))
        after = measure()                           # 64 is a multiple of 8: the same scene as `before`
        assert engine.preset.path.stem == SCENES[WARM_UP % len(SCENES)]
        grown = after["rss_mb"] - before["rss_mb"]
        assert grown < RSS_PER_CHANGE_MB * CHANGES, f"RSS grew {grown:.0f} MB over {CHANGES} scene changes"
        assert after["gl"] == before["gl"], (before["gl"], after["gl"])
        assert (after["threads"], after["fds"]) == (before["threads"], before["fds"]), (before, after)
        assert after["traces"] == before["traces"], "a scene change left a TorchScript function behind"
        assert sum(ref() is not None for ref in generators[:-1]) == 0, "an old scene's generator is alive"
    finally:
        engine.close()
