"""The model catalog: the shipped file checked entry by entry, and downloads from a real HTTP server on 127.0.0.1.

The server serves fixture files under catalog-like paths; VJ_MODELS_MIRROR points the catalog at it and
VJ_CATALOG at a test catalog whose entries describe the fixtures. It can drop a connection or stall after
some bytes, and it logs every request's Range header.
"""

import hashlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

from vj.catalog.entries import KINDS, CatalogError, load_catalog
from vj.catalog.store import FetchError, check_loads, fetch, model_path, resolve, status, verify

HOST = "https://download.example.org"        # the catalog's publisher; the mirror replaces it


class Files(BaseHTTPRequestHandler):
    """Serves `files` (path -> bytes) with Range; `drop`/`stall` (path -> bytes) act on a path's next request."""

    files: dict[str, bytes] = {}
    drop: dict[str, int] = {}
    stall: dict[str, int] = {}
    log: list[tuple[str, str | None]] = []
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802
        path = urlsplit(self.path).path
        with self.lock:
            self.log.append((path, self.headers.get("Range")))
            drop, stall = self.drop.pop(path, None), self.stall.pop(path, None)
        data = self.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if m:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if drop is not None:                 # the connection breaks after `drop` bytes
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.close_connection = True
            return
        if stall is not None:                # the server goes quiet after `stall` bytes
            self.wfile.write(body[:stall])
            self.wfile.flush()
            time.sleep(3.0)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def net_bytes(tmp_path_factory):
    """A torchvision-shaped GoogLeNet state dict (random weights): a real network file of a catalog kind."""
    from vj.models.deepdream.googlenet import GoogLeNet
    path = tmp_path_factory.mktemp("net") / "googlenet.pth"
    torch.save(GoogLeNet().init_random(3).state_dict(), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def entry(name, file, size, sha="", prefix="", kind="googlenet"):
    return (f'[[model]]\nname = "{name}"\nkind = "{kind}"\nfile = "{file}"\nurl = "{HOST}/models/{file}"\n'
            f'size_bytes = {size}\nresolution = 224\nlicence = "test"\ndescription = "test"\n'
            f'source = "{HOST}/"\nsha256 = "{sha}"\nsha256_prefix = "{prefix}"\n\n')


@pytest.fixture
def setup(server, net_bytes, tmp_path, monkeypatch):
    """Fixture files on the server, a test catalog describing them, a models folder; returns the folder."""
    sha = hashlib.sha256(net_bytes).hexdigest()
    junk = os.urandom(200_000)
    Files.files = {"/models/net.pth": net_bytes, "/models/net2.pth": net_bytes,
                   "/models/short.pth": net_bytes[:5_000_000], "/models/junk.pth": junk}
    Files.drop, Files.stall, Files.log = {}, {}, []
    cat = tmp_path / "catalog.toml"
    cat.write_text(entry("net", "net.pth", len(net_bytes), sha=sha)
                   + entry("net-prefix", "net2.pth", 0, prefix=sha[:8])
                   + entry("wrong-hash", "net2.pth", len(net_bytes), sha="0" * 64)
                   + entry("gone", "gone.pth", 1000)
                   + entry("short", "short.pth", len(net_bytes), sha=sha)
                   + entry("junk", "junk.pth", len(junk), sha=hashlib.sha256(junk).hexdigest()))
    monkeypatch.setenv("VJ_CATALOG", str(cat))
    monkeypatch.setenv("VJ_MODELS_MIRROR", f"http://127.0.0.1:{server.server_port}")
    folder = tmp_path / "models"
    monkeypatch.setenv("VJ_MODELS", str(folder))
    return folder


def gets(path):
    return [r for p, r in Files.log if p == path]


# ---- the catalog that ships -----------------------------------------------------------------------


def test_the_shipped_catalog_is_complete_and_well_formed():
    cat = load_catalog(Path(__file__).resolve().parent.parent / "vj" / "catalog" / "catalog.toml")
    assert len(cat) >= 10
    kinds = {e.kind for e in cat.values()}
    assert kinds == set(KINDS)                  # every loader has a released network to load
    for e in cat.values():
        parts = urlsplit(e.url)
        assert parts.scheme == "https" and parts.path.endswith("/" + e.file), e.name
        assert e.licence and e.description and e.resolution in (32, 64, 128, 256, 512, 1024, 224, 299), e.name
        m = re.search(r"-([0-9a-f]{8,})\.pth$", e.file)
        if m:                                   # torchvision: the name carries the first digits of the sha256
            assert e.sha256_prefix == m.group(1) or e.sha256.startswith(m.group(1)), e.name
    # Some network is small enough for a laptop GPU to play live (presets/examples/faces.toml uses one).
    assert any(e.live_laptop and e.kind.startswith("stylegan") for e in cat.values())


@pytest.mark.parametrize("text, words", [
    ('[[model]]\nname = "x"\n', "missing kind, file, url"),
    (entry("Bad_Name", "a.pth", 1), "name must be lowercase"),
    (entry("a", "a.pth", 1, kind="resnet"), "kind 'resnet' is not one of"),
    (entry("a", "a.pth", 1).replace("https://", "http://"), "url must be https"),
    (entry("a", "a.pth", 1, sha="abc"), "sha256 must be lowercase hex of 64 digits"),
    (entry("a", "a.pth", 1) + entry("a", "a.pth", 1), "the name is used twice"),
])
def test_a_broken_catalog_is_refused_naming_the_entry(tmp_path, text, words):
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    with pytest.raises(CatalogError, match=re.escape(words)):
        load_catalog(path)


# ---- downloads ------------------------------------------------------------------------------------


def test_a_full_download_is_checked_moved_into_place_and_not_fetched_twice(setup, net_bytes):
    calls = []
    path = fetch("net", progress=lambda done, total, final=False: calls.append((done, total, final)))
    assert path == setup / "net" / "net.pth" and path.read_bytes() == net_bytes
    assert not list(setup.rglob("*.part"))
    assert calls[-1] == (len(net_bytes), len(net_bytes), True) and len(calls) > 5     # progress as bytes came
    assert fetch("net", progress=False) == path and len(gets("/models/net.pth")) == 1  # there: no request
    assert verify("net").ok and "GoogLeNet" in verify("net").line
    assert dict((e.name, st) for e, st in status())["net"] == "present"


def test_a_dropped_connection_is_resumed_with_a_range_request(setup, net_bytes):
    Files.drop["/models/net.pth"] = 5_000_000
    path = fetch("net", progress=False, retries=2)
    assert path.read_bytes() == net_bytes
    assert gets("/models/net.pth") == [None, "bytes=5000000-"]


def test_a_stalled_server_keeps_the_part_and_the_next_get_resumes_it(setup, net_bytes):
    Files.stall["/models/net.pth"] = 3_000_000
    with pytest.raises(FetchError, match=r"net: .*: no data for 0.5 s \(3.0 MB kept; run the same command again"):
        fetch("net", progress=False, stall_s=0.5, retries=0)
    part = setup / "net" / "net.pth.part"
    assert part.stat().st_size == 3_000_000 and not (setup / "net" / "net.pth").exists()
    assert fetch("net", progress=False).read_bytes() == net_bytes
    assert gets("/models/net.pth")[-1] == "bytes=3000000-"


@pytest.mark.parametrize("name, words", [
    ("wrong-hash", r"sha256 [0-9a-f]{16}\.\.\. does not match the catalog's 0{16}\.\.\.; the file was deleted"),
    ("short", r"5000000 bytes, the catalog says \d+ \(truncated or another file\); the file was deleted"),
    ("junk", r"not a googlenet network: .*; the file was deleted"),
])
def test_a_file_that_fails_its_check_is_deleted_with_one_line(setup, name, words):
    with pytest.raises(FetchError, match=rf"^{name}: http://127.0.0.1:\d+/models/\S+: {words}$"):
        fetch(name, progress=False)
    assert [p.suffix for p in (setup / name).iterdir()] == [".lock"]     # neither the file nor its part is left


def test_a_hash_prefix_is_checked_and_a_404_is_one_line(setup, net_bytes):
    assert fetch("net-prefix", progress=False).read_bytes() == net_bytes
    with pytest.raises(FetchError, match=r"^gone: http://127.0.0.1:\d+/models/gone.pth: HTTP 404 Not Found$"):
        fetch("gone", progress=False)
    with pytest.raises(FetchError, match="no model 'nett' in the catalog; did you mean net"):
        fetch("nett")


def test_a_full_disk_removes_the_part_and_says_so(setup, tmp_path, monkeypatch):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        with pytest.raises(FetchError, match=r"net: .*: the disk is full at .*small/net \(needs \d+\.\d MB\)"):
            fetch("net", mnt, progress=False)
        assert not list(mnt.rglob("*.part")) and not (mnt / "net" / "net.pth").exists()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_two_fetches_of_one_model_at_once_download_it_once(setup, net_bytes):
    results, errors = [], []

    def get():
        try:
            results.append(fetch("net", progress=False))
        except Exception as exc:        # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=get) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 2 and results[0] == results[1]
    assert results[0].read_bytes() == net_bytes and gets("/models/net.pth") == [None]


def test_presets_name_catalog_models_and_a_missing_one_says_the_command(setup, net_bytes):
    assert resolve("models/mine.pkl") == "models/mine.pkl"
    with pytest.raises(FetchError, match=r"catalog model net is not downloaded \(\d+\.\d MB\): run `vj models get "
                                         r"net` \(or start with --fetch\)"):
        resolve("catalog:net")
    path = resolve("catalog:net", fetch_missing=True)
    assert Path(path).read_bytes() == net_bytes and resolve("catalog:net") == path


def test_check_loads_knows_a_network_of_the_wrong_kind(setup, net_bytes):
    cat = load_catalog()
    path = fetch("net", progress=False)
    sg = cat["net"].__class__(**{**cat["net"].__dict__, "kind": "stylegan2"})
    check = check_loads(sg, path)
    assert not check.ok and "StyleGAN2 checkpoint" in check.line and "conv1.conv.weight" in check.line


def test_vj_models_list_get_path_verify_from_the_command_line(setup, net_bytes):
    def vj(*args):
        return subprocess.run([sys.executable, "-m", "vj.cli", "models", *args], capture_output=True, text=True,
                              timeout=120, env=os.environ)
    out = vj("list")
    assert out.returncode == 0 and "(0 of 6 present" in out.stdout and re.search(r"\n  net +missing", out.stdout)
    miss = vj("path", "net")
    assert miss.returncode != 0 and "net is not downloaded: run `vj models get net`" in miss.stderr
    got = vj("get", "net")
    assert got.returncode == 0 and got.stdout.strip() == str(model_path(load_catalog()["net"], setup))
    assert vj("path", "net").stdout.strip() == got.stdout.strip()
    assert re.search(r"\n  net +present", vj("list").stdout)
    ok = vj("verify")
    assert ok.returncode == 0 and ok.stdout.startswith("net: ok: a torchvision GoogLeNet state dict, sha256")
    Path(got.stdout.strip()).write_bytes(b"\x80" + net_bytes[1:])           # damaged on disk since
    bad = vj("verify", "net")
    assert bad.returncode == 1 and "does not match" in bad.stdout


def test_a_scene_with_missing_random_plays_without_the_file_until_it_is_fetched(tmp_path, monkeypatch, caplog):
    from vj import scene
    from vj.scene import files_beside
    monkeypatch.setenv("VJ_MODELS", str(tmp_path))
    monkeypatch.setattr(scene, "_SAID_MISSING", set())          # said once a process: this test's is the first
    want = {"weights": "catalog:googlenet-imagenet", "missing": "random", "net_width": 0.5}
    assert files_beside(dict(want), None) == {"net_width": 0.5}          # presets/dream.toml before the download
    assert "vj models get googlenet-imagenet" in caplog.text and "random weights" in caplog.text
    caplog.clear()
    assert files_beside(dict(want), None) == {"net_width": 0.5} and not caplog.text      # once, not every visit
    path = tmp_path / "googlenet-imagenet" / "googlenet-1378be20.pth"
    path.parent.mkdir()
    path.write_bytes(b"as `vj models get` leaves it")
    assert files_beside(dict(want), None) == {"weights": str(path), "net_width": 0.5}
    with pytest.raises(FetchError, match="run `vj models get stylegan2-ffhq-512`"):     # no `missing`: an error
        files_beside({"weights": "catalog:stylegan2-ffhq-512"}, None)
    with pytest.raises(ValueError, match='missing must be "error" or "random"'):
        files_beside({"missing": "sometimes"}, None)


def test_render_with_fetch_downloads_what_the_preset_names_and_without_it_says_the_command(setup, net_bytes,
                                                                                              tmp_path):
    preset = tmp_path / "dogs.toml"
    preset.write_text('name = "dogs"\n[model]\nname = "deepdream"\nweights = "catalog:net"\nsource = "plasma"\n')
    out = tmp_path / "out.mp4"

    def render(*extra):
        return subprocess.run([sys.executable, "-m", "vj.cli", "render", "demo", "-o", str(out), "--preset",
                               str(preset), "--duration", "0.2", "--fps", "10", "--size", "64x36", "--no-progress",
                               *extra], capture_output=True, text=True, timeout=300, env=os.environ)
    first = render()
    assert first.returncode != 0 and "catalog model net is not downloaded" in first.stderr
    assert "run `vj models get net` (or start with --fetch)" in first.stderr and not out.exists()
    second = render("--fetch")
    assert second.returncode == 0, second.stderr[-2000:]
    assert (setup / "net" / "net.pth").read_bytes() == net_bytes and out.stat().st_size > 0


def test_no_network_says_so_in_one_line_and_leaves_nothing(setup, monkeypatch):
    with socket.socket() as s:                        # a port nobody listens on: as offline as it gets here
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VJ_MODELS_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(FetchError, match=r"^net: http://127.0.0.1:\d+/models/net.pth: connection refused "
                                         r"\(nothing downloaded\)$"):
        fetch("net", progress=False, retries=1)
    assert not (setup / "net" / "net.pth").exists() and not (setup / "net" / "net.pth.part").exists()
