"""Test-session isolation: a loopback-only network, a JACK server name of its own, torch threads per test.

The network and the JACK name are set up when pytest loads this file, before any test (or thread) starts,
so every server and child process the tests start inherits them. Two suites can then run side by side on
one machine without sharing ports, JACK servers or multicast traffic, and nothing a test sends leaves
127.0.0.1. `--order reverse|random[:SEED]` runs the tests in another order, to find tests that depend on
what ran before them.
"""

from __future__ import annotations

import atexit
import os
import random
import shutil
import tempfile
from pathlib import Path

import pytest

from netns import enter_loopback_namespace, only_loopback

NETNS_ERROR = enter_loopback_namespace()

# jackd and libjack read the server name from JACK_DEFAULT_SERVER: the servers this session starts are
# its own, and a JACK server a user already runs ("default") is never touched or stopped by a test.
os.environ.setdefault("JACK_DEFAULT_SERVER", f"vjtest{os.getpid()}")

# The NDI runtime reads its config once, when it first starts in a process: a loopback-only config for the whole
# session (no mDNS here), set before any test can start it (tests/ndi_helpers.py says what it holds).
from ndi_helpers import write_config  # noqa: E402

_NDI_CONFIG = tempfile.mkdtemp(prefix="vj-ndi-")
write_config(Path(_NDI_CONFIG))
atexit.register(shutil.rmtree, _NDI_CONFIG, ignore_errors=True)     # the session's children have ended by then

# The `vj` command caps glibc malloc's arenas before its first thread (vj.allocator); the tests that measure a
# long show's memory (test_long_show.py) measure it the way the show runs.
from vj.allocator import limit_arenas  # noqa: E402

limit_arenas()

import torch  # noqa: E402  (after the namespace: unshare wants a process with one thread)


def pytest_addoption(parser) -> None:
    parser.addoption("--order", default="file", metavar="file|reverse|random[:SEED]",
                     help="test order: as in the files, reversed, or modules and the tests in each shuffled "
                          "(to find tests that depend on what ran before them)")


def pytest_report_header(config) -> list[str]:
    lines = ["network: a loopback-only namespace (only lo)" if NETNS_ERROR is None else
             f"network: NOT isolated ({NETNS_ERROR}); tests that send multicast are skipped"]
    if config.getoption("order") != "file":
        lines.append(f"order: {config.getoption('order')}")
    return lines


def pytest_collection_modifyitems(config, items) -> None:
    order = config.getoption("order")
    if order == "reverse":
        items.reverse()
    elif order.startswith("random"):
        rng = random.Random(int(order.partition(":")[2] or 0))
        modules: dict[str, list] = {}
        for item in items:
            modules.setdefault(item.nodeid.split("::")[0], []).append(item)
        groups = list(modules.values())
        rng.shuffle(groups)               # whole modules, so module fixtures (Xvfb, JACK) start once each
        for group in groups:
            rng.shuffle(group)
        items[:] = [item for group in groups for item in group]
    elif order != "file":
        raise pytest.UsageError(f"--order {order}: expected file, reverse or random[:SEED]")


@pytest.fixture(autouse=True)
def torch_threads_restored():
    """torch.set_num_threads is process-wide (the model worker's torch_threads sets it): whatever a test
    sets, the next test starts with the thread count it would have had (a module's fixture may set one)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def loopback_only() -> None:
    """For tests that send multicast (mDNS, Link, NDI): skipped unless only `lo` is visible."""
    if not only_loopback():
        pytest.skip(f"multicast stays on loopback only in a loopback-only namespace: {NETNS_ERROR}")
