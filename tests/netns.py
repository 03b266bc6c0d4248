"""A loopback-only network namespace for the test session, so test traffic never leaves 127.0.0.1.

mDNS (OSCQuery's zeroconf), and later Ableton Link, NDI and Ray, send multicast on every interface the
machine has. `enter_loopback_namespace()` moves this process into a new network namespace that has only
`lo`, up, with multicast routed to it (shared/RECIPES.md, last section); every thread and child process
started afterwards is in it too. It also gives each test session its own ports: a second suite running
beside this one can bind 9001 as well. As root it needs nothing more; otherwise a user namespace maps
this user to root inside it (where the kernel allows unprivileged user namespaces).

Call it before any thread exists: unshare(2) moves only the calling thread, and CLONE_NEWUSER refuses a
multi-threaded process.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import socket
import subprocess

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000


def only_loopback() -> bool:
    """True when the only network interface this process can see is `lo`."""
    return [name for _, name in socket.if_nameindex()] == ["lo"]


def enter_loopback_namespace() -> str | None:
    """Enter a new loopback-only network namespace; None on success (or already in one), else why not."""
    if only_loopback():
        return None
    ip = shutil.which("ip")
    if ip is None:
        return "`ip` (iproute2) is not installed"
    uid, gid = os.geteuid(), os.getegid()
    flags = CLONE_NEWNET if uid == 0 else CLONE_NEWUSER | CLONE_NEWNET
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        return f"unshare: {os.strerror(ctypes.get_errno())}"
    if uid != 0:
        # Root inside the user namespace is this user outside it: files the tests write stay ours.
        for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    for args in (["link", "set", "lo", "up"], ["link", "set", "lo", "multicast", "on"],
                 ["route", "add", "224.0.0.0/4", "dev", "lo"]):
        out = subprocess.run([ip, *args], capture_output=True, text=True)
        if out.returncode != 0:
            return f"ip {' '.join(args)}: {out.stderr.strip()}"
    return None
