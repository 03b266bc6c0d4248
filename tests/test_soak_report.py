"""`vj bench soak`'s summary: growth per 100 scene changes after warm-up, counts compared scene for scene."""

from vj.soak import Row, SoakReport


def report(rss, gl, switch_every_s=5.0):
    rep = SoakReport(switch_every_s=switch_every_s)
    for i, (mb, n) in enumerate(zip(rss, gl)):
        rep.rows.append(Row(minute=i + 1.0, changes=12 * (i + 1), rss_mb=mb, gl_objects=n, threads=30, fds=45,
                            frame_ms_p50=15.0, frame_ms_p99=20.0, model_fps=10.0))
    return "\n".join(rep.summary())


def test_growth_is_the_slope_after_warm_up_per_100_changes():
    # 12 changes a minute; after the first third RSS climbs 0.6 MB a minute = 5 MB per 100 changes exactly.
    # The warm-up's steep rise (first four rows) is left out, so the slope is exact up to float rounding.
    rss = [500.0, 700.0, 800.0, 850.0] + [850.0 + 0.6 * i for i in range(1, 9)]
    text = report(rss, [80] * 12)
    assert "RSS +5.0 MB per 100 scene changes" in text
    assert "over 4 h at one change every 5 s (2880 changes): +144 MB" in text


def test_counts_that_alternate_with_the_scene_are_not_growth_and_real_growth_is():
    flat = [900.0] * 12
    assert "GL objects 84 -> 84" in report(flat, [74, 84] * 6)
    assert "GL objects 84 -> 96" in report(flat, [74, 84] * 5 + [90, 96])


def test_a_run_without_changes_says_it_is_too_short():
    rep = SoakReport()
    rep.rows.append(Row(1.0, 0, 900.0, 80, 30, 45, 15.0, 20.0, 10.0))
    assert "too short" in rep.summary()[0]
