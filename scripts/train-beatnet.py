#!/usr/bin/env python3
"""Trains vj's beat network (vj/audio/beatnet.py) on the beat corpus (docs/BEAT_CORPUS.md).

    python scripts/train-beatnet.py features CORPUS_DIR [CORPUS_DIR ...] -o CACHE_DIR
    python scripts/train-beatnet.py train CACHE_DIR -o vj/audio/beatnet.npz [--fold K/N] [--extra CACHE_DIR]

`features` decodes every NAME.flac + NAME.beats pair, plays it at several speeds (varispeed: tempo and
pitch together, so the network sees each groove at other tempi) and stores the band magnitudes of every
analysis hop (48 kHz, hop 512, window 2048: the live analyzer's) with the label of each hop: 0 no beat,
1 beat, 2 downbeat, at the hop LABEL_DELAY_HOPS after the beat sounds.

`train` fits the network with torch (CPU, about 10 minutes on one core): random 10 s excerpts, each
through a random gain, spectral tilt and noise floor (`augment`), dropout on the inputs and between the
layers, cross-entropy against labels widened by a hop either side at half weight. `--fold K/N` leaves out
the pieces whose index in the sorted list of names is K modulo N, for out-of-fold scores
(`vj bench beats --beatnet WEIGHTS`); the weights the repository ships are trained on every piece.
Training is seeded and single-threaded per step, so a rerun on the same machine gives the same weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vj.audio import beatnet  # noqa: E402
from vj.audio.decode import decode_file  # noqa: E402
from vj.bench_beats import read_beats  # noqa: E402

SR = 48000
HOP = 512
FFT = 2048
SPEEDS = ((5, 6), (11, 12), (1, 1), (12, 11), (6, 5))   # resample up/down: tempo x down/up
EXCERPT_HOPS = 960                                       # 10.2 s


def labels(times_s: np.ndarray, in_bar: np.ndarray, n_hops: int, hop_s: float) -> np.ndarray:
    y = np.zeros(n_hops, np.int8)
    idx = np.round(times_s / hop_s).astype(np.int64) + beatnet.LABEL_DELAY_HOPS - 1   # hop i is index i - 1
    ok = (idx >= 0) & (idx < n_hops)
    y[idx[ok]] = np.where(in_bar[ok] == 1, 2, 1)
    return y


def features(args) -> None:
    from scipy.signal import resample_poly

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for corpus in args.corpus:
        corpus = Path(corpus)
        tag = corpus.name
        for beats_path in sorted(corpus.glob("*.beats")):
            audio = beats_path.with_suffix(".flac")
            if not audio.exists():
                continue
            mono = decode_file(audio, SR).mean(axis=1)
            beats = read_beats(beats_path)
            if beats.in_bar is None:
                print(f"{beats_path}: no beat-in-bar column, skipped (the network learns downbeats too)")
                continue
            times, in_bar = beats.times_s, beats.in_bar
            for up, down in SPEEDS:
                dest = out / f"{beats_path.stem}@{tag}@{down}-{up}.npz"
                if dest.exists():
                    continue
                t0 = time.process_time()
                x = mono if up == down else resample_poly(mono, up, down).astype(np.float32)
                mags = beatnet.file_features(x, SR, HOP, FFT).astype(np.float32)
                y = labels(times * up / down, in_bar, len(mags), HOP / SR)
                np.savez(dest, mags=mags, y=y)
                print(f"{dest.name:60s} {len(mags):6d} hops {time.process_time() - t0:5.1f} s", flush=True)


def augment(mags: np.ndarray, rng) -> np.ndarray:
    """Another mix and room for the same excerpt: overall gain -20..+10 dB, a spectral tilt of +-12 dB
    over the range, +-3 dB per band, and a steady noise floor -90..-50 dB."""
    n = mags.shape[1]
    db = rng.uniform(-20.0, 10.0) + rng.uniform(-12.0, 12.0) * (np.arange(n) / (n - 1) - 0.5) \
        + rng.uniform(-3.0, 3.0, size=n)
    floor = 10.0 ** (rng.uniform(-90.0, -50.0) / 20.0)
    return mags * 10.0 ** (db / 20.0) + floor


def piece_names(cache: Path) -> list[str]:
    return sorted({p.name.split("@")[0] for p in cache.glob("*.npz")})


def train(args) -> None:
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    cache = Path(args.cache)
    names = piece_names(cache)
    held = set()
    if args.fold:
        k, n = (int(v) for v in args.fold.split("/"))
        held = {name for i, name in enumerate(names) if i % n == k}
    data = []
    files = sorted(cache.glob("*.npz")) + sorted(p for c in args.extra for p in Path(c).glob("*.npz"))
    for p in files:
        if p.parent == cache and p.name.split("@")[0] in held:
            continue
        with np.load(p) as d:
            data.append((d["mags"], d["y"]))
    n_hops = sum(len(m) for m, _ in data)
    print(f"{len(data)} files, {n_hops} hops ({n_hops * HOP / SR / 60:.0f} min); held out: {sorted(held)}",
          flush=True)
    n_in = 2 * data[0][0].shape[1]

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(args.dropout)
            self.gru = torch.nn.GRU(n_in, beatnet.HIDDEN, num_layers=2, batch_first=True, dropout=args.dropout)
            self.out = torch.nn.Linear(beatnet.HIDDEN, 3)

        def forward(self, x):
            return self.out(self.drop(self.gru(self.drop(x))[0]))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    weights = [len(m) for m, _ in data]
    probs = np.array(weights, float) / sum(weights)
    class_w = torch.tensor([1.0, 8.0, 16.0])
    steps = args.steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps)
    t0 = time.time()
    for step in range(steps):
        xs, ys = [], []
        for f in rng.choice(len(data), size=args.batch, p=probs):
            mags, y = data[f]
            s = int(rng.integers(0, max(1, len(mags) - EXCERPT_HOPS)))
            x = beatnet.inputs_from_magnitudes(augment(mags[s:s + EXCERPT_HOPS], rng))
            yy = y[s:s + EXCERPT_HOPS]
            if len(x) < EXCERPT_HOPS:
                pad = EXCERPT_HOPS - len(x)
                x = np.vstack((x, np.zeros((pad, x.shape[1]))))
                yy = np.concatenate((yy, np.zeros(pad, np.int8)))
            xs.append(x)
            ys.append(yy)
        x = torch.tensor(np.stack(xs), dtype=torch.float32)
        y = torch.tensor(np.stack(ys), dtype=torch.long)
        # Widened targets: the hops beside a beat count half as that class, half as no beat.
        target = torch.nn.functional.one_hot(y, 3).float()
        near = torch.zeros_like(target)
        near[:, 1:] += target[:, :-1]
        near[:, :-1] += target[:, 1:]
        near[..., 0] = 0.0
        near = near.clamp(max=1.0) * (y == 0).unsqueeze(-1)
        target = target * (1 - near.sum(-1, keepdim=True).clamp(max=1)) + 0.5 * near
        target[..., 0] += 0.5 * near.sum(-1).clamp(max=1)
        logits = net(x)
        logp = torch.log_softmax(logits, -1)
        loss = -(target * logp * class_w).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == steps - 1:
            print(f"step {step:5d} loss {loss.item():.4f} {time.time() - t0:6.0f} s", flush=True)
    out = {}
    for i in range(2):
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            out[k.replace("weight", "w").replace("bias", "b") + str(i)] = \
                getattr(net.gru, f"{k}_l{i}").detach().numpy().astype(np.float32)
    out["w_out"] = net.out.weight.detach().numpy().astype(np.float32)
    out["b_out"] = net.out.bias.detach().numpy().astype(np.float32)
    np.savez_compressed(args.out, **out)
    print(f"wrote {args.out}: {sum(v.size for v in out.values())} weights", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features")
    f.add_argument("corpus", nargs="+")
    f.add_argument("-o", "--out", required=True)
    t = sub.add_parser("train")
    t.add_argument("cache")
    t.add_argument("-o", "--out", required=True)
    t.add_argument("--fold", default="")
    t.add_argument("--extra", action="append", default=[], metavar="CACHE_DIR",
                   help="features of training-only music (beat-corpus.py --extra), never held out by --fold")
    t.add_argument("--steps", type=int, default=1500)
    t.add_argument("--batch", type=int, default=32)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--dropout", type=float, default=0.2)
    args = ap.parse_args()
    {"features": features, "train": train}[args.cmd](args)


if __name__ == "__main__":
    main()
