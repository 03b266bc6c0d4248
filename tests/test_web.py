"""The web control page: real HTTP and websocket clients, then the page itself in headless Chromium (Selenium)
driving a headless engine whose frames run on the test thread."""

import json
import shutil
import struct
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from websockets.sync.client import connect

from test_engine import CFG, ctx, frames  # noqa: F401  (GL fixture)
from test_osc import PARAMS, drain, snapshot, snapshot_hub, wait_for
from vj.config import AudioConfig, ControlConfig
from vj.control.state import ControlHub
from vj.control.web import WebServer, start_control_servers
from vj.engine import Engine
from vj.gfx.png import encode_png

PNG = encode_png(np.full((6, 10, 3), 200, np.uint8))


def http(server, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), b""


@pytest.fixture
def web():
    hub = snapshot_hub()
    s = WebServer(hub, port=0, preview=lambda: PNG).start()
    yield s, hub
    s.close()


def test_page_and_static_files_are_served(web):
    s, _ = web
    status, headers, body = http(s, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="app.js"></script>' in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    status, headers, body = http(s, "/app.js")
    assert status == 200 and b"new WebSocket" in body
    assert http(s, "/style.css")[0] == 200
    assert http(s, "/../../etc/passwd")[0] == 404
    assert http(s, "/nope")[0] == 404


def test_preview_answers_the_shows_image_or_nothing():
    hub = snapshot_hub()
    calls = []

    def failing():
        calls.append(1)
        raise RuntimeError("no frame yet")

    servers = [WebServer(hub, port=0, preview=p).start() for p in (lambda: PNG, lambda: None, failing, None)]
    try:
        status, headers, body = http(servers[0], "/preview")
        assert (status, headers["Content-Type"], body) == (200, "image/png", PNG)
        assert [http(s, "/preview")[0] for s in servers[1:]] == [204, 204, 204]
        assert calls == [1]
    finally:
        for s in servers:
            s.close()


def test_websocket_sends_the_registry_and_takes_changes(web):
    s, hub = web
    with connect(f"ws://127.0.0.1:{s.port}/ws") as ws:
        schema = json.loads(ws.recv(timeout=3))
        assert schema["type"] == "schema" and schema["preview"] is True
        assert [p["path"] for p in schema["params"]] == sorted(p.path for p in PARAMS)
        sides = next(p for p in schema["params"] if p["path"] == "/fx/kaleido/sides")
        assert (sides["kind"], sides["min"], sides["max"]) == ("int", 1, 16)
        assert schema["presets"] == ["default", "nebula"] and "/cmd/tap" in [c["path"] for c in schema["commands"]]
        values = json.loads(ws.recv(timeout=3))
        assert values["type"] == "values" and values["values"]["/fx/grade/tint"] == [1.0, 1.0, 1.0, 1.0]
        ws.send(json.dumps({"path": "/fx/kaleido/sides", "value": 9}))
        ws.send(json.dumps({"path": "/fx/grade/tint", "value": [1, 0.5, 0, 1]}))
        ws.send(json.dumps({"path": "/cmd/tap"}))
        ws.send(json.dumps({"path": "/cmd/preset/load", "value": "nebula"}))
        for bad in ('{"path": "/master/brightness", "value": NaN}', '{"path": "/fx/nope", "value": 1}',
                    '{"path": "/fx/kaleido/sides", "value": "lots"}', "not json", '{"value": 1}',
                    '{"path": "/fx/grade/tint", "value": [1, 2, 3, 4, 5]}', '{"path": "/cmd/rm", "value": 1}'):
            ws.send(bad)
        ws.send(b"\x00\x01")
        got = drain(hub.changes, 4)
        assert [(c.path, c.value, c.source) for c in got] == [
            ("/fx/kaleido/sides", 9, "web"), ("/fx/grade/tint", (1.0, 0.5, 0.0, 1.0), "web"),
            ("/cmd/tap", None, "web"), ("/cmd/preset/load", "nebula", "web")]
        assert wait_for(lambda: s.rejected == 8)
        assert hub.changes.empty()
        hub.publish(snapshot(version=2, frame=1, fx__kaleido__sides=9))
        pushed = []
        while not any(m.get("type") == "values" for m in pushed):
            pushed.append(json.loads(ws.recv(timeout=3)))
        assert [m["values"] for m in pushed if m["type"] == "values"] == [{"/fx/kaleido/sides": 9}]


def test_start_control_servers_starts_what_the_config_asks_and_closes_it():
    hub = ControlHub()
    cfg = ControlConfig(osc_port=0, oscquery_port=0, web=True, web_port=0)
    servers = start_control_servers(hub, cfg)
    try:
        assert servers.osc is None and servers.oscquery is None and servers.web is not None
        assert http(servers.web, "/")[0] == 200
    finally:
        servers.close()
    with pytest.raises(OSError):
        http(servers.web, "/")


# ---- the page in a browser ----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def driver():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("chromium and chromium-driver (apt) are needed for the browser test")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    yield d
    d.quit()


@pytest.fixture
def show(ctx):  # noqa: F811
    """A headless engine with the web server; preview() hands out the PNG the 'main thread' left behind."""
    e = Engine(ctx, CFG, AudioConfig(), live=False)
    latest = {"png": None}
    s = WebServer(e.hub, port=0, preview=lambda: latest["png"]).start()
    e.load_preset("default")
    frames(e, 1)
    latest["png"] = encode_png(e.read_rgb())
    yield e, s, latest
    s.close()
    e.close()


def pump(engine, cond, timeout_s=20.0, audio=None):
    """Run engine frames on this thread until cond() holds."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        frames(engine, 1, audio)
        if cond():
            return True
        time.sleep(0.01)
    return False


def page_value(driver, path):
    return driver.execute_script(
        "const e = document.querySelector(`[data-path='${arguments[0]}']`); return e ? e.value : null;", path)


def open_page(driver, engine, server):
    driver.get(f"http://127.0.0.1:{server.port}/")
    assert pump(engine, lambda: page_value(driver, "/master/brightness") is not None), "no controls on the page"


def test_page_lists_the_registry_and_a_slider_moves_the_engine(driver, show):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    engine, server, _ = show
    open_page(driver, engine, server)
    sliders = {e.get_attribute("data-path") for e in driver.find_elements(By.CSS_SELECTOR, "input[type=range]")}
    expected = {p.path for p in engine.registry.params()
                if p.kind in ("float", "int") or (p.kind == "enum" and not p.labels) or p.kind == "point2d"}
    assert {s for s in sliders if "#" not in s} == expected
    toggles = {e.get_attribute("data-path") for e in driver.find_elements(By.CSS_SELECTOR, "input[type=checkbox]")}
    assert toggles == {p.path for p in engine.registry.params() if p.kind == "bool"}
    assert page_value(driver, "/master/brightness") == "1"
    slider = driver.find_element(By.CSS_SELECTOR, "input[data-path='/master/brightness']")
    slider.send_keys(Keys.END)                                     # a performer pushes the fader to the top
    assert pump(engine, lambda: engine.registry.get("/master/brightness") == 2.0), \
        engine.registry.get("/master/brightness")
    slider.send_keys(Keys.ARROW_LEFT)
    assert pump(engine, lambda: 1.99 < engine.registry.get("/master/brightness") < 2.0)
    driver.find_element(By.CSS_SELECTOR, "input[data-path='/master/blackout']").click()
    assert pump(engine, lambda: engine.registry.get("/master/blackout") is True)


def test_engine_side_changes_show_up_on_the_page(driver, show):
    engine, server, _ = show
    open_page(driver, engine, server)
    assert page_value(driver, "/fx/kaleidoscope/sides") == "6"
    engine.registry.set("/fx/kaleidoscope/sides", 9, "midi")
    assert pump(engine, lambda: page_value(driver, "/fx/kaleidoscope/sides") == "9"), \
        page_value(driver, "/fx/kaleidoscope/sides")


def test_preset_button_loads_the_preset_and_the_page_follows(driver, show):
    from selenium.webdriver.common.by import By

    engine, server, _ = show
    open_page(driver, engine, server)
    buttons = [b.get_attribute("data-preset") for b in driver.find_elements(By.CSS_SELECTOR, "button.preset")]
    assert "nebula" in buttons and "default" in buttons
    driver.find_element(By.CSS_SELECTOR, "button.preset[data-preset='nebula']").click()
    assert pump(engine, lambda: engine.preset.name == "Nebula"), engine.preset.name
    assert pump(engine, lambda: driver.find_element(By.ID, "preset-name").text == "Nebula")
    active = driver.find_element(By.CSS_SELECTOR, "button.preset.active")
    assert active.get_attribute("data-preset") == "nebula"
    # the new preset's params are on the page with its values
    nebula_only = {p.path for p in engine.registry.params()} - {"/fx/kaleidoscope/sides"}
    some = sorted(p for p in nebula_only if p.startswith("/fx/"))[0]
    assert pump(engine, lambda: page_value(driver, some) is not None), some


def test_tap_button_sets_the_tempo_shown_as_bpm_and_the_preview_loads(driver, show):
    from selenium.webdriver.common.by import By

    engine, server, latest = show
    open_page(driver, engine, server)
    silence = np.zeros(1600 * 15, np.float32)
    tap = driver.find_element(By.ID, "tap")
    for _ in range(4):                                             # a tap every 15 frames of 1600 samples: 0.5 s
        tap.click()
        assert wait_for(lambda: not engine.changes.empty())
        frames(engine, 15, silence)
    # 4 taps, each on the hop it arrives in (10.7 ms): the fitted slope moves by at most 0.8 hop a beat, 2 BPM,
    # and 5 leaves room for the page's clicks to land a frame apart. A doubled or lost tap: 30-40 BPM off.
    assert engine.features.bpm == pytest.approx(120.0, abs=5.0)
    assert pump(engine, lambda: driver.find_element(By.ID, "bpm").text == f"{engine.features.bpm:.1f} BPM",
                audio=silence[:1600]), driver.find_element(By.ID, "bpm").text
    latest["png"] = encode_png(engine.read_rgb())
    width = struct.unpack(">I", latest["png"][16:20])[0]
    assert pump(engine, lambda: driver.execute_script("return document.getElementById('preview').naturalWidth")
                == width)


def test_mapping_view_drags_an_output_corner_and_follows_the_engine(driver, show):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from vj.mapping.calibrate import output_params
    from vj.mapping.spec import parse_outputs

    engine, server, _ = show
    outputs = parse_outputs('[[output]]\nname = "wall"\n\n[[output]]\nname = "side"\nmesh = '
                            '[[[0, 0], [0.5, 0], [1, 0]], [[0, 1], [0.5, 1], [1, 1]]]\n')
    engine.declare_show_params(output_params(outputs))
    open_page(driver, engine, server)
    assert pump(engine, lambda: len(driver.find_elements(By.CSS_SELECTOR, "figure.output-map")) == 2)
    handles = {h.get_attribute("data-path") for h in driver.find_elements(By.CSS_SELECTOR, "g.handle")}
    assert handles == {f"/output/wall/corner/{i}" for i in range(1, 5)} | {
        f"/output/side/point/{r}/{c}" for r in (1, 2) for c in (1, 2, 3)}
    svg = driver.find_element(By.CSS_SELECTOR, "svg[data-output='wall']")
    width = svg.size["width"]                       # the view box is 1.3 output widths across
    handle = driver.find_element(By.CSS_SELECTOR, "g.handle[data-path='/output/wall/corner/3'] circle")
    ActionChains(driver).move_to_element(handle).click_and_hold().move_by_offset(-0.2 * width / 1.3, 0) \
        .move_by_offset(0, -0.1 * width / 1.3).release().perform()
    # dragged 0.2 of the output left and 0.1 up, to a pixel of the page: 1.3 / 260 = 0.005 of the output
    assert pump(engine, lambda: np.allclose(engine.registry.get("/output/wall/corner/3"), (0.8, 0.9), atol=0.012)), \
        engine.registry.get("/output/wall/corner/3")
    # the engine moves a point (OSC, the keys, the file): the handle follows
    engine.registry.set("/output/side/point/2/2", (0.4, 0.7), "osc")
    assert pump(engine, lambda: driver.find_element(By.CSS_SELECTOR, "g.handle[data-path='/output/side/point/2/2']")
                .get_attribute("transform") == "translate(0.4 0.7)")
