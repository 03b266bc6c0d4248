"""One file over HTTP(S), resumable: Range requests, retries after a dropped connection, a stall timeout, progress.

`download(url, part, ...)` appends to `part` (a file that may hold the start of the download from an earlier
try: the request asks for the rest with a Range header, and a server that ignores it is read from the start
again) and returns the sha256 of the whole file. A connection that drops or stalls is retried from where it
stopped; when the tries run out the part stays for the next `vj models get` to resume. A full disk removes
the part (it is the space the disk needs back). Errors are `DownloadError` with one line naming the URL.

Nothing downloaded is ever run: the bytes go to a file, and only our loaders (an allow-list unpickler,
`torch.load(weights_only=True)`) read it afterwards.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, TextIO

CHUNK = 1 << 20                  # bytes read and hashed at a time
RETRIES = 3                      # tries after the first when a connection drops or stalls
RETRY_WAIT_S = 1.0               # before a retry, doubling
STALL_S = 30.0                   # no byte for this long: the connection is dropped and retried
USER_AGENT = "vj-models/1 (+https://github.com/vj)"


class DownloadError(RuntimeError):
    """A download that did not complete; one line saying why. `keep_part`: the part is worth resuming."""

    def __init__(self, message: str, keep_part: bool = False):
        super().__init__(message)
        self.keep_part = keep_part


def mb(n: int | float) -> str:
    return f"{n / 1e6:.1f} MB"


class Progress:
    """A one-line progress bar on a terminal (bytes, rate, time left), a line every few seconds otherwise."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, every_s: float = 0.25):
        self.label, self.total = label, total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s if self.tty else 5.0
        self.t0 = time.monotonic()
        self.start_bytes: int | None = None
        self._shown = 0.0

    def __call__(self, done: int, total: int, final: bool = False) -> None:
        now = time.monotonic()
        if self.start_bytes is None:
            self.start_bytes = done
        if not final and now - self._shown < self.every_s:
            return
        self._shown = now
        total = total or self.total
        rate = (done - self.start_bytes) / max(now - self.t0, 1e-3)
        parts = [f"{self.label}  {mb(done)}" + (f" / {mb(total)}" if total else "")]
        if rate > 0:
            parts.append(f"{rate / 1e6:.1f} MB/s")
            if total and done < total:
                left = (total - done) / rate
                parts.append(f"{int(left // 60)}:{int(left % 60):02d} left")
        line = "  ".join(parts)
        if self.tty:
            self.stream.write("\r" + line.ljust(79) + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class _Held:
    """What the part holds: its length and the running hash (updated as each block is written)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.hasher = hashlib.sha256()

    def restart(self) -> None:
        self.bytes, self.hasher = 0, hashlib.sha256()

    def read(self, path: Path) -> "_Held":
        """Take in what `path` holds (the part of an earlier try, or a finished file); returns self."""
        with open(path, "rb") as f:
            while block := f.read(CHUNK):
                self.hasher.update(block)
                self.bytes += len(block)
        return self


def sha256_of(path: Path) -> str:
    """The sha256 hex digest of a file, read a block at a time."""
    return _Held().read(path).hasher.hexdigest()


def download(url: str, part: Path, *, expected_size: int = 0, stall_s: float = STALL_S, retries: int = RETRIES,
             progress: Callable[..., None] | None = None, retry_wait_s: float = RETRY_WAIT_S) -> str:
    """Bring `part` to the whole file at `url` (resuming what it holds) and return its sha256 hex digest."""
    held = _Held().read(part) if part.exists() else _Held()
    if expected_size and held.bytes > expected_size:     # not the start of this file: begin again
        part.unlink()
        held.restart()
    tries = 0
    while True:
        try:
            total = _fetch(url, part, held, stall_s, progress)
            if total and held.bytes < total:
                raise ConnectionError(f"the server closed the connection at {mb(held.bytes)} of {mb(total)}")
            if progress is not None:
                progress(held.bytes, total, True)
            return held.hasher.hexdigest()
        except DownloadError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                part.unlink(missing_ok=True)
                raise DownloadError(f"{url}: the disk is full at {part.parent} "
                                    f"(needs {mb(expected_size) if expected_size else 'more'})") from None
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500:     # 5xx: the server may recover
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}", keep_part=True) from None
            why = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else \
                f"no data for {stall_s:g} s" if isinstance(exc, (socket.timeout, TimeoutError)) else _why(exc)
        except http.client.HTTPException as exc:        # IncompleteRead and friends: a dropped connection
            why = _why(exc)
        tries += 1
        if tries > retries:
            kept = (f"{mb(held.bytes)} kept; run the same command again to resume" if held.bytes
                    else "nothing downloaded")
            raise DownloadError(f"{url}: {why} ({kept})", keep_part=True)
        time.sleep(retry_wait_s * 2 ** (tries - 1))


def _fetch(url: str, part: Path, held: _Held, stall_s: float, progress) -> int:
    """One request: append the rest of the file to `part`, updating `held`. Returns the whole size, or 0."""
    have = held.bytes
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        reply = urllib.request.urlopen(req, timeout=stall_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:                  # nothing left to send: the part may be the whole file
            length = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
            if length.isdigit() and int(length) == have:
                return have
        raise
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, OSError):
            raise exc.reason from None
        raise ConnectionError(str(exc.reason)) from None
    with reply:
        status = reply.status
        if have and status == 200:                    # the server ignored the Range: start again
            held.restart()
            have = 0
            mode = "wb"
        elif have and status == 206:
            start = (reply.headers.get("Content-Range") or "").removeprefix("bytes ").partition("-")[0]
            if start != str(have):
                raise DownloadError(f"{url}: asked for bytes from {have}, the server sent {start or 'something else'}")
            mode = "ab"
        else:
            mode = "wb" if not have else "ab"
        length = reply.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else 0
        if status == 206:
            full = (reply.headers.get("Content-Range") or "").rpartition("/")[2]
            total = int(full) if full.isdigit() else total
        with open(part, mode) as f:
            try:
                while block := reply.read1(CHUNK):      # what has arrived: a stall loses nothing read
                    f.write(block)
                    held.hasher.update(block)
                    held.bytes += len(block)
                    if progress is not None:
                        progress(held.bytes, total)
            finally:
                f.flush()
                os.fsync(f.fileno())
    return total


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__

