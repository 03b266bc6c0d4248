"""Audio servers for measurements and tests: JACK with its dummy driver, or PulseAudio with a null sink.

`vj bench latency` and the live tests play sound into the same input path a show uses, through a real
server. Each class uses a server that is already running, or starts one (and stops only what it started).
No sound card is needed: the dummy driver and the null sink keep time with the system clock.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

START_TIMEOUT_S = 15.0


class AudioServerError(RuntimeError):
    """The audio server is missing, did not start, or refused a request."""


def _run(args: list[str], env: dict | None = None, timeout_s: float = 5.0) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout_s)


class JackServer:
    """A JACK server: the one running, or `jackd -R -d dummy` started here.

    Started here it asks for realtime scheduling, as a JACK setup on stage runs: then another busy process
    cannot stall its cycles (under the normal scheduler, a loaded machine bunched and dropped MIDI clock
    ticks). Where the system refuses realtime, jackd says so in its log and runs without it.

    PortAudio's JACK host API shows it as the input device `system`. Ports of this process appear as
    `PortAudio:in_N` / `PortAudio:out_N` (numbered per stream); `connect` wires them with jack_connect.
    """

    def __init__(self, sample_rate_hz: int = 48000, period_frames: int = 256, channels: int = 2):
        self.sample_rate_hz = sample_rate_hz
        self.period_frames = period_frames
        self.channels = channels
        self.proc: subprocess.Popen | None = None
        self.started_here = False
        self.env = dict(os.environ, JACK_NO_AUDIO_RESERVATION="1")

    @staticmethod
    def installed() -> bool:
        return all(shutil.which(x) for x in ("jackd", "jack_lsp", "jack_connect"))

    def running(self) -> bool:
        try:
            return _run(["jack_lsp"], self.env).returncode == 0 and bool(self.ports())
        except (OSError, subprocess.TimeoutExpired):
            return False

    def start(self) -> "JackServer":
        if not self.installed():
            raise AudioServerError("JACK is not installed (apt install jackd2); `make setup` installs it")
        if self.running():
            return self
        self._log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            ["jackd", "-R", "-d", "dummy", "-r", str(self.sample_rate_hz), "-p", str(self.period_frames),
             "-C", str(self.channels), "-P", str(self.channels)],
            env=self.env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        self.started_here = True
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.running():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._log.seek(0)
                tail = self._log.read().decode("utf-8", "replace").strip().splitlines()[-2:]
                self.stop()
                raise AudioServerError(f"jackd did not start: {' | '.join(tail) or 'no output'}")
            time.sleep(0.05)
        return self

    def ports(self) -> list[str]:
        out = _run(["jack_lsp"], self.env)
        return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []

    def connect(self, source: str, dest: str) -> None:
        out = _run(["jack_connect", source, dest], self.env)
        if out.returncode != 0 and "already" not in (out.stderr + out.stdout):
            raise AudioServerError(f"jack_connect {source} {dest}: {(out.stderr or out.stdout).strip()}")

    def disconnect(self, source: str, dest: str) -> None:
        _run(["jack_disconnect", source, dest], self.env)

    def stop(self) -> None:
        """Stop the server if it was started here (PortAudio streams on it must be closed first)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> "JackServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class PulseServer:
    """A PulseAudio user daemon with a null sink `vjnull`; its monitor is the default input (`pulse` in ALSA).

    It runs in its own XDG_RUNTIME_DIR so it never touches a desktop's server; `env` carries that dir for
    the clients (paplay, and this process through `os.environ` when `export` is set). `start()` may be
    called again after `kill()`: same runtime dir, same socket, same sink.
    """

    def __init__(self, runtime_dir: str | None = None, sample_rate_hz: int = 48000, export: bool = True):
        self.runtime_dir = runtime_dir or tempfile.mkdtemp(prefix="vj-pulse-")
        os.makedirs(self.runtime_dir, mode=0o700, exist_ok=True)
        os.chmod(self.runtime_dir, 0o700)
        self.sample_rate_hz = sample_rate_hz
        self.env = dict(os.environ, XDG_RUNTIME_DIR=self.runtime_dir, HOME=self.runtime_dir)
        self.export = export
        self._old_runtime = os.environ.get("XDG_RUNTIME_DIR")
        self.procs: list[subprocess.Popen] = []

    @staticmethod
    def installed() -> bool:
        return all(shutil.which(x) for x in ("pulseaudio", "pactl", "paplay"))

    def start(self) -> "PulseServer":
        if not self.installed():
            raise AudioServerError("PulseAudio is not installed (apt install pulseaudio pulseaudio-utils)")
        proc = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "-L", "module-native-protocol-unix",
             "-L", f"module-null-sink sink_name=vjnull rate={self.sample_rate_hz}", "-L", "module-always-sink"],
            env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT_S
        while _run(["pactl", "info"], self.env).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode(errors="replace")[-300:] if proc.poll() is not None else "timeout"
                self.close()
                raise AudioServerError(f"pulseaudio did not start: {err.strip()}")
            time.sleep(0.05)
        if self.export:
            os.environ["XDG_RUNTIME_DIR"] = self.runtime_dir    # for ALSA's pulse plugin in this process
        return self

    def kill(self) -> None:
        """SIGKILL, like pulling the plug: no goodbye to the clients."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(5)

    def freeze(self, frozen: bool) -> None:
        """SIGSTOP / SIGCONT the running server: streams stay open but no callback comes."""
        self.procs[-1].send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)

    def play(self, path) -> subprocess.Popen:
        proc = subprocess.Popen(["paplay", "--device=vjnull", str(path)], env=self.env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(5)
            if proc.stderr is not None:
                proc.stderr.close()
        self.procs.clear()
        if self.export:
            if self._old_runtime is None:
                os.environ.pop("XDG_RUNTIME_DIR", None)
            else:
                os.environ["XDG_RUNTIME_DIR"] = self._old_runtime

    def __enter__(self) -> "PulseServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
