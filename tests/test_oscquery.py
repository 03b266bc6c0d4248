"""OSCQuery over real HTTP (urllib) and a real websocket client; zeroconf seen by a real browser."""

import http.client
import json
import socket
import time
import urllib.error
import urllib.request

import pytest
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from test_osc import PARAMS, drain, send, snapshot, snapshot_hub, wait_for
from vj.control.osc import OSCServer
from vj.control.oscquery import OSCQueryServer
from vj.params import Registry


def get(server, path):
    """(status, parsed JSON or None)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            body = r.read()
            return r.status, json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, None


@pytest.fixture
def servers():
    hub = snapshot_hub()
    osc = OSCServer(hub, port=0).start()
    q = OSCQueryServer(hub, port=0, osc=osc, mdns=False).start()
    yield hub, osc, q
    q.close()
    osc.close()


def test_namespace_has_types_ranges_values_and_units(servers):
    hub, osc, q = servers
    status, root = get(q, "/")
    assert status == 200 and root["FULL_PATH"] == "/" and root["ACCESS"] == 0
    fx = root["CONTENTS"]["fx"]
    assert fx["FULL_PATH"] == "/fx" and "TYPE" not in fx
    sides = fx["CONTENTS"]["kaleido"]["CONTENTS"]["sides"]
    assert sides == {"FULL_PATH": "/fx/kaleido/sides", "TYPE": "i", "VALUE": [6], "RANGE": [{"MIN": 1, "MAX": 16}],
                     "ACCESS": 3, "CLIPMODE": ["both"], "DESCRIPTION": "mirror segments"}
    bright = root["CONTENTS"]["master"]["CONTENTS"]["brightness"]
    assert (bright["TYPE"], bright["VALUE"], bright["RANGE"], bright["UNIT"]) == \
        ("f", [1.0], [{"MIN": 0.0, "MAX": 2.0}], ["x"])
    warp = fx["CONTENTS"]["warp"]["CONTENTS"]
    assert (warp["on"]["TYPE"], warp["on"]["VALUE"]) == ("T", [False])
    assert (warp["center"]["TYPE"], warp["center"]["VALUE"], len(warp["center"]["RANGE"])) == ("ff", [0.5, 0.5], 2)
    tint = fx["CONTENTS"]["grade"]["CONTENTS"]["tint"]
    assert (tint["TYPE"], tint["VALUE"]) == ("r", ["#ffffffff"])
    mode = fx["CONTENTS"]["mirror"]["CONTENTS"]["mode"]
    assert mode["TYPE"] == "i" and mode["RANGE"][0]["VALS"] == [0, 1, 2] and "2 = xy" in mode["DESCRIPTION"]
    fire = fx["CONTENTS"]["strobe"]["CONTENTS"]["fire"]
    assert (fire["TYPE"], fire["ACCESS"]) == ("N", 2) and "VALUE" not in fire
    cmd = root["CONTENTS"]["cmd"]["CONTENTS"]
    assert (cmd["tap"]["TYPE"], cmd["tap"]["ACCESS"]) == ("N", 2)
    assert cmd["preset"]["CONTENTS"]["load"]["RANGE"] == [{"VALS": ["default", "nebula"]}]
    bpm = root["CONTENTS"]["feature"]["CONTENTS"]["bpm"]
    assert (bpm["TYPE"], bpm["ACCESS"], bpm["VALUE"]) == ("f", 1, [120.0])
    leaves = []

    def walk(node):
        if "CONTENTS" in node:
            for child in node["CONTENTS"].values():
                walk(child)
        else:
            leaves.append(node["FULL_PATH"])
    walk(root)
    assert {p.path for p in PARAMS} <= set(leaves)


def test_attribute_queries_host_info_and_errors(servers):
    hub, osc, q = servers
    assert get(q, "/fx/kaleido/sides?VALUE") == (200, {"VALUE": [6]})
    assert get(q, "/master/brightness?RANGE") == (200, {"RANGE": [{"MIN": 0.0, "MAX": 2.0}]})
    assert get(q, "/fx/kaleido/sides") [1]["TYPE"] == "i"
    assert get(q, "/fx/kaleido?VALUE") == (204, None)              # a container has no value
    assert get(q, "/fx/nope")[0] == 404
    assert get(q, "/fx/kaleido/sides?NONSENSE")[0] == 400
    status, info = get(q, "/?HOST_INFO")
    assert status == 200
    assert (info["OSC_PORT"], info["OSC_TRANSPORT"], info["OSC_IP"]) == (osc.port, "UDP", "127.0.0.1")
    assert info["EXTENSIONS"]["LISTEN"] is True and info["EXTENSIONS"]["VALUE"] is True
    hub.publish(snapshot(version=2, fx__kaleido__sides=9))
    assert get(q, "/fx/kaleido/sides?VALUE") == (200, {"VALUE": [9]})   # always the newest snapshot


def recv_osc(ws, timeout_s=3.0):
    """The next binary (OSC) frame as (address, params); text frames are skipped."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            msg = ws.recv(timeout=max(0.01, end - time.monotonic()))
        except TimeoutError:
            break
        if isinstance(msg, bytes):
            m = OscMessage(msg)
            return m.address, m.params
    return None


def test_websocket_listen_pushes_changes_as_osc_and_ignore_stops_them(servers):
    hub, osc, q = servers
    with connect(f"ws://127.0.0.1:{q.port}/") as ws:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/fx/kaleido/sides"}))
        assert wait_for(lambda: any(q.listens.values()))
        hub.publish(snapshot(version=2, master__brightness=0.3))          # not listened to
        hub.publish(snapshot(version=3, master__brightness=0.3, fx__kaleido__sides=11))
        assert recv_osc(ws) == ("/fx/kaleido/sides", [11])
        ws.send(json.dumps({"COMMAND": "IGNORE", "DATA": "/fx/kaleido/sides"}))
        assert wait_for(lambda: not any(q.listens.values()))
        hub.publish(snapshot(version=4, fx__kaleido__sides=12))
        assert recv_osc(ws, 0.5) is None


def test_websocket_listen_to_a_feature_and_a_path_request(servers):
    hub, osc, q = servers
    with connect(f"ws://127.0.0.1:{q.port}/") as ws:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/feature/bpm"}))
        ws.send("/fx/kaleido/sides")                                       # a path alone: that node as JSON
        node = json.loads(ws.recv(timeout=3))
        assert node["FULL_PATH"] == "/fx/kaleido/sides" and node["VALUE"] == [6]
        snap = snapshot(version=1, frame=7)
        hub.publish(type(snap)(**{**snap.__dict__, "features": {**snap.features, "bpm": 128.0}}))
        address, params = recv_osc(ws)
        assert address == "/feature/bpm" and params == [pytest.approx(128.0)]


def test_websocket_osc_sets_values_and_path_changes_are_announced(servers):
    hub, osc, q = servers
    with connect(f"ws://127.0.0.1:{q.port}/") as ws:
        b = OscMessageBuilder("/fx/kaleido/sides")
        b.add_arg(7)
        ws.send(b.build().dgram)
        ws.send(b"\x00garbage")                                            # refused and counted, not fatal
        got = drain(hub.changes, 1)
        assert [(c.path, c.value, c.source) for c in got] == [("/fx/kaleido/sides", 7, "oscquery")]
        assert wait_for(lambda: osc.malformed == 1)
        from vj.params import Param
        extra = Param("/fx/new/amount", 0.5)
        hub.publish(snapshot(version=5, params=PARAMS + (extra,)))
        msgs = []
        end = time.monotonic() + 3
        while time.monotonic() < end and not msgs:
            m = ws.recv(timeout=3)
            if isinstance(m, str):
                msgs.append(json.loads(m))
        assert msgs == [{"COMMAND": "PATH_ADDED", "DATA": "/fx/new/amount"}]
        assert get(q, "/fx/new/amount?VALUE") == (200, {"VALUE": [0.5]})


def test_cross_origin_websockets_and_other_clients_are_refused():
    hub = snapshot_hub()
    q = OSCQueryServer(hub, port=0, mdns=False).start()
    shut = OSCQueryServer(hub, port=0, mdns=False, allow=["10.1.2.3"]).start()
    try:
        with pytest.raises(InvalidStatus) as err:
            connect(f"ws://127.0.0.1:{q.port}/", origin="http://evil.example")
        assert err.value.response.status_code == 403
        with connect(f"ws://127.0.0.1:{q.port}/", origin=f"http://127.0.0.1:{q.port}"):
            pass                                                           # same origin is fine
        assert get(shut, "/")[0] == 403 and shut.denied == 1
    finally:
        q.close()
        shut.close()


def test_requests_naming_another_host_are_refused(servers):
    hub, osc, q = servers
    for host, status in ((f"evil.example:{q.port}", 403), (f"localhost:{q.port}", 200),
                         (f"{socket.gethostname()}:{q.port}", 200), (f"127.0.0.1:{q.port}", 200)):
        c = http.client.HTTPConnection("127.0.0.1", q.port, timeout=5)
        c.putrequest("GET", "/?HOST_INFO", skip_host=True)
        c.putheader("Host", host)
        c.endheaders()
        assert c.getresponse().status == status, host
        c.close()
    assert q.denied == 1


def test_a_taken_port_is_a_clear_error():
    hub = snapshot_hub()
    q = OSCQueryServer(hub, port=0, mdns=False).start()
    try:
        with pytest.raises(OSError, match=f"cannot listen for oscquery on 127.0.0.1:{q.port}"):
            OSCQueryServer(hub, port=q.port, mdns=False).start()
    finally:
        q.close()


def test_zeroconf_advertises_oscjson_and_osc(loopback_only):
    zeroconf = pytest.importorskip("zeroconf")
    hub = snapshot_hub()
    osc = OSCServer(hub, port=0).start()
    q = OSCQueryServer(hub, port=0, osc=osc, mdns=True, service_name=f"vj-test-{time.monotonic_ns() % 10**6}").start()
    try:
        assert q.advertiser.wait(20)
        assert q.advertiser.error is None          # the loopback-only namespace routes multicast to lo
        found = {}

        class Listener(zeroconf.ServiceListener):
            def add_service(self, zc, type_, name):
                info = zc.get_service_info(type_, name, timeout=3000)
                if info is not None and name in q.advertiser.registered:
                    found[type_] = (info.port, info.parsed_addresses())

            def update_service(self, zc, type_, name):
                pass

            def remove_service(self, zc, type_, name):
                pass

        zc = zeroconf.Zeroconf(ip_version=zeroconf.IPVersion.V4Only)
        try:
            browser = zeroconf.ServiceBrowser(zc, ["_oscjson._tcp.local.", "_osc._udp.local."], Listener())
            assert wait_for(lambda: len(found) == 2, 15), found
            browser.cancel()
        finally:
            zc.close()
        assert found["_oscjson._tcp.local."] == (q.port, ["127.0.0.1"])
        assert found["_osc._udp.local."] == (osc.port, ["127.0.0.1"])
        host = socket.gethostname()
        assert all(host.split(".")[0] in n for n in q.advertiser.registered)
    finally:
        q.close()
        osc.close()


def test_norm_nodes_are_0_to_1_faders_that_move_the_real_param(servers):
    hub, osc, q = servers
    status, node = get(q, "/norm/master/brightness")
    assert status == 200
    assert (node["TYPE"], node["RANGE"], node["VALUE"], node["ACCESS"]) == ("f", [{"MIN": 0.0, "MAX": 1.0}], [0.5], 3)
    assert get(q, "/norm/fx/kaleido/sides?TYPE") == (200, {"TYPE": "f"})
    assert get(q, "/norm/fx/mirror/mode?RANGE") == (200, {"RANGE": [{"MIN": 0.0, "MAX": 1.0}]})
    for not_numeric in ("/norm/fx/warp/on", "/norm/fx/grade/tint", "/norm/fx/strobe/fire"):
        assert get(q, not_numeric)[0] == 404
    with connect(f"ws://127.0.0.1:{q.port}/") as ws:
        ws.send(json.dumps({"COMMAND": "LISTEN", "DATA": "/norm/master/brightness"}))
        assert wait_for(lambda: any(q.listens.values()))
        # A controller bound to the node sends to the OSC port it learnt from HOST_INFO (liblo's oscsend here).
        port = get(q, "/?HOST_INFO")[1]["OSC_PORT"]
        send(port, node["FULL_PATH"], "f", 0.75)
        got = drain(hub.changes, 1)
        assert [(c.path, c.value) for c in got] == [("/master/brightness", pytest.approx(1.5))]
        registry = Registry()                                  # the engine applies the Change to its registry
        registry.declare_all(PARAMS)
        assert registry.set(got[0].path, got[0].value, got[0].source)
        hub.publish(snapshot(version=2, master__brightness=registry.get("/master/brightness")))
        assert recv_osc(ws) == ("/norm/master/brightness", [pytest.approx(0.75)])
    assert get(q, "/norm/master/brightness?VALUE") == (200, {"VALUE": [0.75]})
