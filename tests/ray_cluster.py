"""A real Ray cluster on 127.0.0.1 for the tests: a head and worker nodes, each `ray start --block` in a process
group of its own, stopped by signalling those groups (never `ray stop`, which stops every Ray on the machine)."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = Path(sys.executable).parent / "ray"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    """`workers` nodes of `cpus` CPUs each, and a head with none (tasks run on the workers only)."""

    def __init__(self, workers: int = 2, cpus: int = 1):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # Short: Ray's unix sockets live under it, and a socket path has at most 107 characters.
        self.temp = tempfile.mkdtemp(prefix="vjray", dir="/tmp")
        # TMPDIR: the workers unpack each job's inputs there (vj.cluster.worker.unpack); it goes with the cluster.
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(32), "TMPDIR": self.temp}
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        common = ["--block", "--node-ip-address=127.0.0.1", "--object-store-memory=200000000", "--disable-usage-stats"]
        self._start(["--head", f"--port={self.port}", "--num-cpus=0", "--include-dashboard=false",
                     f"--temp-dir={self.temp}", *common])
        self.wait_nodes(1)
        for k in range(workers):        # one at a time: two raylets starting together on 2 cores time out
            self._start([f"--address={self.address}", f"--num-cpus={cpus}", *common])
            self.wait_nodes(2 + k)

    def _start(self, args: list[str]) -> None:
        log = Path(self.temp) / f"node{len(self.procs)}.log"
        self.logs.append(log)
        with open(log, "wb") as f:
            self.procs.append(subprocess.Popen([str(RAY), "start", *args], stdout=f, stderr=subprocess.STDOUT,
                                               env=self.env, start_new_session=True))

    def alive_nodes(self) -> int:
        code = ("import ray; ray.init(address=%r, log_to_driver=False, configure_logging=False); "
                "print(sum(n['Alive'] for n in ray.nodes()))" % self.address)
        r = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True, text=True, timeout=60)
        return int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else 0

    def wait_nodes(self, n: int, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                break
            if self.alive_nodes() >= n:
                return
            time.sleep(1.0)
        tails = "\n".join(f"{log.name}: {log.read_text(errors='replace')[-1500:]}" for log in self.logs)
        self.close()
        raise RuntimeError(f"the Ray cluster did not come up with {n} nodes:\n{tails}")

    def close(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            for p in reversed(self.procs):
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            for p in self.procs:
                try:
                    p.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for pid in self.leftover():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not os.environ.get("VJ_KEEP_RAY"):         # a dying raylet may still write a log into it: twice
            for _ in range(2):
                shutil.rmtree(self.temp, ignore_errors=True)
                if not os.path.exists(self.temp):
                    break
                time.sleep(1.0)

    def leftover(self) -> list[int]:
        """Processes of this cluster still running (their command line names its temp folder or port)."""
        out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        return [int(line.split()[0]) for line in out.splitlines()
                if (self.temp in line or f":{self.port}" in line) and "ps -eo" not in line]
