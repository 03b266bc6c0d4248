"""The Ray driver in a child process, so that a driver Ray ends without a word still gets its one-line message."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable

from vj.cluster.store import ClusterError

LOST = ("the Ray driver ended without a word (exit code {code}): Ray stops a driver whose node lost the cluster's "
        "head. Finished chunks are kept beside the output (OUTPUT.vjchunks/): start the cluster again and run the "
        "same command with --resume")


def run_isolated(fn: Callable, *args, on_lost: Callable[[], None] | None = None, **kwargs):
    """fn(*args, **kwargs) in a spawned child (fn and its arguments picklable); its result, or ClusterError with
    the one line of what went wrong there, or with LOST (after `on_lost()`, which tidies what the child could
    not) when the child died before it could say."""
    ctx = multiprocessing.get_context("spawn")      # not fork: torch, GL and Ray's threads do not survive a fork
    receive, send = ctx.Pipe(duplex=False)
    root = logging.getLogger()
    fmt = root.handlers[0].formatter._fmt if root.handlers and root.handlers[0].formatter else None
    child = ctx.Process(target=_child, args=(send, fn, args, kwargs, root.level, fmt), name="vj-cluster-driver")
    child.start()
    send.close()
    try:
        try:
            kind, value = receive.recv()
        except EOFError:
            kind, value = None, None
        child.join()
    except KeyboardInterrupt:
        child.terminate()
        child.join()
        raise
    if kind == "ok":
        return value
    if kind is None and on_lost is not None:
        on_lost()
    raise ClusterError(value if kind == "error" else LOST.format(code=child.exitcode))


def _child(send, fn: Callable, args: tuple, kwargs: dict, level: int, fmt: str | None) -> None:
    logging.basicConfig(level=level, format=fmt or logging.BASIC_FORMAT)
    try:
        result = ("ok", fn(*args, **kwargs))
    except Exception as exc:       # noqa: BLE001 - every error goes back to the parent as its one line
        text = str(exc).strip()
        result = ("error", text.splitlines()[0] if text else type(exc).__name__)
    send.send(result)
    send.close()
