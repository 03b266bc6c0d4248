"""The cluster driver's parts that need no cluster: the plan, the chunk store, the job digest, Ray missing."""

import subprocess
import sys

import pytest

from vj.cluster.driver import plan
from vj.cluster.job import render_job
from vj.cluster.store import ChunkStore, ClusterError
from vj.cluster.worker import ChunkResult, unpack
from vj.config import AudioConfig, RenderConfig


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


def result(index: int, data: bytes = b"frames") -> ChunkResult:
    return ChunkResult(index, index * 10, 10, True, data, "node", 1, 10, 0, 0.1)


def test_store_keeps_whole_chunks_and_refuses_another_job(tmp_path):
    out = tmp_path / "show.mp4"
    store = ChunkStore(out, "a" * 64, resume=False)
    store.save(result(0))
    store.save(result(1))
    (store.folder / "chunk-00002.mkv").write_bytes(b"half")          # the driver died while writing chunk 2
    (store.folder / "chunk-00003.json").write_text('{"index": 3, "bytes": 99}')   # .json of a missing .mkv
    assert sorted(ChunkStore(out, "a" * 64, resume=True).finished()) == [0, 1]
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
