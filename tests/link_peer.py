"""A second Ableton Link peer in its own process, for the tests: aalink directly, nothing of vj.

    python tests/link_peer.py BPM QUANTUM

prints `ready` once its peer is up, then a line every 5 ms: `s MONOTONIC_S BEAT TEMPO PEERS READ_S` (the beat
read between MONOTONIC_S and MONOTONIC_S + READ_S, with QUANTUM: on a busy machine the process can be paused in
between, and READ_S says by how much). Commands on stdin, one a line: `tempo BPM` (prints `tempo MONOTONIC_S BPM` just
after setting it), `quit`.
"""

import asyncio
import sys
import threading
import time
import warnings


def main() -> None:
    import aalink

    bpm, quantum = float(sys.argv[1]), float(sys.argv[2])
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def make():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return aalink.Link(bpm)
    link = asyncio.run_coroutine_threadsafe(make(), loop).result(5)
    link.quantum = quantum
    link.enabled = True
    lock = threading.Lock()
    stop = threading.Event()

    def commands() -> None:
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["tempo"]:
                with lock:
                    link.tempo = float(words[1])
                    print(f"tempo {time.monotonic():.6f} {float(words[1])}", flush=True)
            elif words[:1] == ["quit"]:
                break
        stop.set()
    threading.Thread(target=commands, daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        with lock:
            t = time.monotonic()
            beat = link.beat
            read_s = time.monotonic() - t
            print(f"s {t:.6f} {beat:.6f} {link.tempo:.4f} {link.num_peers} {read_s:.6f}", flush=True)
        time.sleep(0.005)
    link.enabled = False


if __name__ == "__main__":
    main()
