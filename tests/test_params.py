"""Registry: clamping, coercion, unknown paths reported once and never raised."""

import logging
import math

import pytest

from vj.clock import smooth
from vj.params import Change, Param, Registry


def make_registry():
    r = Registry()
    r.declare(Param("/fx/kaleido/sides", 6, 1, 16, kind="int"))
    r.declare(Param("/fx/bloom/amount", 0.5, 0.0, 2.0))
    r.declare(Param("/master/blackout", False, kind="bool"))
    r.declare(Param("/fx/grade/tint", (1.0, 0.5, 0.0, 1.0), kind="color"))
    r.declare(Param("/fx/warp/center", (0.5, 0.5), 0.0, 1.0, kind="point2d"))
    r.declare(Param("/fx/mirror/mode", 0, 0, 2, kind="enum", labels=("h", "v", "quad")))
    return r


def test_values_are_clamped_and_coerced():
    r = make_registry()
    assert r.set("/fx/kaleido/sides", 99.4) and r.get("/fx/kaleido/sides") == 16
    assert r.set("/fx/kaleido/sides", 7.6) and r.get("/fx/kaleido/sides") == 8
    assert r.set("/fx/bloom/amount", -3) and r.get("/fx/bloom/amount") == 0.0
    assert r.set("/master/blackout", 1.0) and r.get("/master/blackout") is True
    assert r.set("/fx/grade/tint", (2.0, 0.5, -1.0)) and r.get("/fx/grade/tint") == (1.0, 0.5, 0.0, 1.0)
    assert r.set("/fx/warp/center", [1.5, 0.25]) and r.get("/fx/warp/center") == (1.0, 0.25)
    assert r.set("/fx/mirror/mode", "quad") and r.get("/fx/mirror/mode") == 2


@pytest.mark.parametrize("value", [math.nan, math.inf, "abc", None, (1, 2), b"\xff"])
def test_bad_values_are_ignored_and_counted(value):
    r = make_registry()
    assert not r.set("/fx/bloom/amount", value, "osc")
    assert r.get("/fx/bloom/amount") == 0.5
    assert r.rejected == 1


def test_unknown_path_reported_once(caplog):
    r = make_registry()
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert not r.apply(Change("/no/such/param", 1.0, "osc"))
    assert r.rejected == 5
    assert sum("/no/such/param" in m for m in caplog.messages) == 1


def test_bad_declarations_raise():
    with pytest.raises(ValueError):
        Param("no-slash", 0.0)
    with pytest.raises(ValueError):
        Param("/a/b", 0.0, 1.0, 0.0)


def test_normalise_roundtrip():
    p = Param("/x", 0.0, -2.0, 2.0)
    assert p.normalise(1.0) == pytest.approx(0.75)
    assert p.denormalise(0.75) == pytest.approx(1.0)


def test_smoothing_is_frame_rate_independent():
    def run(fps):
        v = 0.0
        for _ in range(int(fps)):  # one second
            v = smooth(v, 1.0, 1.0 / fps, 0.3)
        return v
    # float64, <= 144 multiply-adds: rounding ~1e-14; a frame-counted smoothing differs by ~0.4.
    assert run(30) == pytest.approx(run(144), abs=1e-9)
    assert run(30) == pytest.approx(1 - math.exp(-1 / 0.3), abs=1e-9)
