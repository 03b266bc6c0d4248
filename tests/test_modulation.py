"""Modulation: base + sum(amount * curve(source)), clamped, smoothed in seconds."""

import pytest

from vj.audio.features import Features
from vj.modulation import Modulator, Route, RouteError
from vj.params import Param, Registry


def setup():
    r = Registry()
    r.declare(Param("/fx/zoom", 1.0, 0.5, 2.0))
    r.declare(Param("/fx/slow", 0.0, 0.0, 1.0, smoothing_s=0.5))
    r.declare(Param("/fx/on", False, kind="bool"))
    return r, Modulator(r)


def test_routes_add_and_clamp():
    r, m = setup()
    m.set_routes([Route("bass", "/fx/zoom", 0.5), Route("high", "/fx/zoom", 0.25, "square")])
    f = m.evaluate(Features(bass=0.5, high=1.0), 1 / 60)
    assert f["/fx/zoom"] == pytest.approx(1.0 + 0.25 + 0.25)
    f = m.evaluate(Features(bass=1.0, high=1.0), 1 / 60)
    assert f["/fx/zoom"] == pytest.approx(1.75)
    m.set_routes([Route("bass", "/fx/zoom", 5.0)])
    assert m.evaluate(Features(bass=1.0), 1 / 60)["/fx/zoom"] == 2.0
    assert r.get("/fx/zoom") == 1.0  # the base value is untouched


def test_bool_target_switches_at_half():
    _, m = setup()
    m.set_routes([Route("onset", "/fx/on", 1.0)])
    assert m.evaluate(Features(onset=True), 0.01)["/fx/on"] is True
    assert m.evaluate(Features(onset=False), 0.01)["/fx/on"] is False


def test_smoothing_same_at_30_and_144_fps():
    out = []
    for fps in (30, 144):
        _, m = setup()
        m.set_routes([Route("level", "/fx/slow", 1.0)])
        for _ in range(fps):  # one second of full level
            v = m.evaluate(Features(level=1.0), 1 / fps)["/fx/slow"]
        out.append(v)
    # Exact exponential smoothing: both rates give 1 - exp(-1 / 0.5) up to float64 rounding over <= 144 steps
    # (~1e-14); hop-counted smoothing would differ by 0.1+. abs=1e-6 leaves room for float32 state.
    assert out[0] == pytest.approx(out[1], abs=1e-6)
    assert 0.8 < out[0] < 0.9  # 1 - exp(-1 / 0.5)


@pytest.mark.parametrize("route", [
    Route("nope", "/fx/zoom", 1.0), Route("bass", "/no/target", 1.0), Route("bass", "/fx/zoom", 1.0, "wiggly"),
    Route("bass", "/fx/zoom", float("nan")),
])
def test_bad_routes_refused(route):
    _, m = setup()
    with pytest.raises(RouteError):
        m.set_routes([route])
    assert m.routes == ()
