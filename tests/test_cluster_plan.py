"""The cluster driver's parts that need no cluster: the plan, the chunk store, the job digest, Ray missing."""

import subprocess
import sys
import tempfile

import pytest

from vj.cluster.driver import plan
from vj.cluster.job import render_job
from vj.cluster.store import ChunkStore, ClusterError
from vj.cluster.worker import ChunkResult, unpack
from vj.config import AudioConfig, RenderConfig


@pytest.fixture(autouse=True)
def own_tmp(tmp_path, monkeypatch):
    """Jobs unpack into the test's own folder, not the machine's /tmp."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def test_plan_covers_every_frame_once():
    chunks = plan(7205, 30.0, 30.0, 3.0, 0.5)
    assert [c.first for c in chunks] == list(range(0, 7205, 900))
    assert chunks[-1].stop == 7205 and all(a.stop == b.first for a, b in zip(chunks, chunks[1:]))
    assert {c.warm for c in chunks} == {90}
    assert [c.tail for c in chunks] == [15] * 7 + [5, 0], "a tail never reaches past the next chunk"
    short = plan(10, 30.0, 0.1, 0.0, 1.0)
    assert [(c.first, c.stop, c.tail) for c in short] == [(0, 3, 3), (3, 6, 3), (6, 9, 1), (9, 10, 0)]
    with pytest.raises(ClusterError, match="--chunk-s"):
        plan(10, 30.0, 0.0, 0.0, 0.0)


def result(index: int, parts=(b"frames", b"more")) -> ChunkResult:
    return ChunkResult(index, index * 10, 10, True, list(parts), "node", 1, 10, 0, 0.1)


def test_store_keeps_whole_chunks_and_refuses_another_job(tmp_path):
    out = tmp_path / "show.mp4"
    store = ChunkStore(out, "a" * 64, resume=False)
    store.save(result(0))
    store.save(result(1))
    (store.folder / "chunk-00002-000.mkv").write_bytes(b"half")       # the driver died while writing chunk 2
    (store.folder / "chunk-00003.json").write_text('{"index": 3, "parts": [9]}')   # .json of a missing part
    store.save(result(4))
    (store.folder / "chunk-00004-001.mkv").write_bytes(b"mor")          # a part cut short
    kept = ChunkStore(out, "a" * 64, resume=True)
    assert sorted(kept.finished()) == [0, 1]
    assert [p.read_bytes() for p in kept.parts(1, kept.finished()[1])] == [b"frames", b"more"]
    with pytest.raises(ClusterError, match="another job"):
        ChunkStore(out, "b" * 64, resume=True)
    assert ChunkStore(out, "b" * 64, resume=False).finished() == {}, "a new render starts afresh"


def test_digest_names_inputs_and_settings(tmp_path):
    wav = tmp_path / "a.wav"
    wav.write_bytes(b"RIFF....")
    job, bundle = render_job(str(wav), "prism", RenderConfig(), AudioConfig(), 100)
    assert set(bundle) >= {"audio/a.wav", "presets/prism.toml"}
    d = job.digest(bundle)
    assert d == job.digest(dict(bundle))
    assert d != job.digest({**bundle, "audio/a.wav": b"RIFF...!"})
    job2, bundle2 = render_job(str(wav), "prism", RenderConfig(fps=25.0), AudioConfig(), 100)
    assert job2.digest(bundle2) != d
    root = unpack(bundle, d)
    assert (root / "audio/a.wav").read_bytes() == b"RIFF...."
    with pytest.raises(ValueError, match="leaves the job folder"):
        unpack({"../evil": b""}, "f" * 64)


def test_without_ray_the_message_says_how_to_install_it():
    code = ("import sys; sys.modules['ray'] = None\n"
            "from vj.cluster.driver import connect\n"
            "try:\n    connect('local')\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ClusterError --cluster needs Ray") and "pip install" in out


def test_a_chunk_comes_back_in_parts_that_join_to_its_frames():
    """render_chunk without Ray (each part kept as bytes): cut into parts of a few frames, the frames are the same
    as in one part, in order, and the chunk covers its frames and no others."""
    from vj.cluster.frames import read_chunk
    from vj.cluster.worker import Chunk, render_chunk
    from vj.show import cut_track
    cfg = RenderConfig(width_px=64, height_px=36, fps=30.0, render_scale=1.0, model_width_px=64, model_height_px=36)
    acfg = AudioConfig()
    job, bundle = render_job("demo", "prism", cfg, acfg, cut_track("demo", acfg.sample_rate_hz, 30.0, 0, 1).n_frames,
                             duration_s=1.0)
    chunk = Chunk(1, 10, 20, 5, 0)
    one = render_chunk(job, bundle, job.digest(bundle), chunk)
    cut = render_chunk(job, bundle, job.digest(bundle), chunk, part_bytes=1)
    assert len(one.parts) == 1 and len(cut.parts) == 10, "prism starts exactly: no tail"
    a, b = list(read_chunk(one.parts)), list(read_chunk(cut.parts))
    assert len(a) == one.frames == 10 and all((x == y).all() for x, y in zip(a, b))
    assert one.exact_start and one.skipped == 10 and one.first == 10


def test_gpu_models_get_a_gpu_each_where_the_cluster_has_them(tmp_path):
    from vj.cluster.driver import job_models, task_resources
    preset = tmp_path / "faces.toml"
    preset.write_text('name = "faces"\n[model]\nname = "stylegan"\n')
    job, bundle = render_job("demo", str(preset), RenderConfig(), AudioConfig(), 10)
    assert job_models(bundle) == {"stylegan"}
    assert task_resources(job_models(bundle), 8.0) == {"num_cpus": 1, "num_gpus": 1}
    assert task_resources(job_models(bundle), 0.0) == {"num_cpus": 1, "num_gpus": 0}
    _, cppn = render_job("demo", "prism", RenderConfig(), AudioConfig(), 10)
    assert task_resources(job_models(cppn), 8.0) == {"num_cpus": 1, "num_gpus": 0}, "a CPU scene leaves GPUs free"


def test_progress_shows_the_job_and_each_running_chunk(capsys):
    from vj.cluster.driver import ClusterProgress
    bar = ClusterProgress(900, 3, enabled=True)
    running = [{"chunk": 2, "node": "gpu2", "pid": 41, "stage": "rendering", "done": 120, "frames": 315},
               {"chunk": 1, "node": "gpu1", "pid": 40, "stage": "starting", "done": 0, "frames": 315}]
    bar.update(420, 1, running)
    bar.update(900, 3, [])
    err = capsys.readouterr().err
    first, second = err.split("\x1b[3F")          # the second update rewrites the three lines of the first
    assert "420/900 frames" in first and "chunks 1/3 done, 2 running" in first
    assert first.index("gpu1:40  chunk 1  starting 0/315") < first.index("gpu2:41  chunk 2  rendering 120/315")
    assert "900/900 frames" in second and "0 running" in second
