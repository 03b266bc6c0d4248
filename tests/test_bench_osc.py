"""`vj bench osc`: hostile datagrams at a live OSC server leave it running with a registry in range."""

from vj.bench_osc import malformed_pool, run_osc_bench


def test_the_pool_is_hostile_and_the_server_survives_it():
    pool = malformed_pool(500, seed=1)
    assert len(set(pool)) > 300 and max(len(p) for p in pool) > 8000
    r = run_osc_bench(count=20000, pool=2000, seed=1)
    assert r["alive"], r
    assert r["out_of_range"] == 0, r
    assert r["received"] > 0 and r["rejected"] > r["received"] // 2, r
    assert r["applied"] > 0, r          # the well-formed out-of-range ones are clamped and applied
