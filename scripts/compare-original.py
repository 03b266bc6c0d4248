#!/usr/bin/env python3
"""Checks vj's StyleGAN networks and DeepDream GoogLeNet against the original code they reimplement.

    python scripts/compare-original.py --stylegan3 ~/src/stylegan3 \
        --stylegan2-ada ~/src/stylegan2-ada-pytorch --rosinality ~/src/stylegan2-pytorch
    python scripts/compare-original.py --stylegan3 ~/src/stylegan3 --checkpoint ffhq.pkl --seeds 0,1 --psi 1,0.7
    python scripts/compare-original.py --torchvision        # with torchvision installed beside vj

Each repository is optional. For each one given, a child process that imports the original code builds
small networks in several configurations with every weight and buffer moved off its initial value (so a
noise strength, bias or magnitude EMA the loader dropped would show), saves each in that code's own
format (an NVlabs pickle through its torch_utils.persistence; a rosinality torch.save checkpoint), and
computes G(z, c, truncation_psi, noise_mode) in float32 for a few seeds, z = RandomState(seed).randn(1,
z_dim). With --checkpoint, the original code unpickles a real network pickle instead (this runs the
pickle's own code, as NVlabs' loader does; use it on files you trust). Then this process, in which the
original code is not importable, loads every file through vj (vj.models.sample, the code behind `vj
model sample`) and compares. One line per case; exits 1 when any case differs by more than --tol times
the reference output's RMS.

--fixtures --work tests/fixtures/original writes the tiny networks and references that
tests/test_models_stylegan_original.py checks in every test run, with each pickled module's source
replaced by a placeholder line, so that no NVlabs code is committed.

--torchvision does the same for torchvision's googlenet (weights and batch-norm statistics shaken, both
transform_input settings): its state dict, loaded as the DeepDream backbone, must give every dreamable
layer's output and the logits.

The original repositories are not part of vj and nothing of them is copied here: they are read from the
directories given. No GPU is needed; the original ops fall back to their reference paths on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------
# Child side: runs with the original repository first on sys.path.

def _shake(G, seed: int) -> None:
    """Move every parameter and buffer off its initial value, deterministically (the original code's modules)."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith(("noise_strength", "noise.weight")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            else:
                spread = float(p.std()) if p.numel() > 1 and float(p.std()) > 0 else 0.3
                p.add_(torch.randn(p.shape, generator=g) * 0.2 * spread)
        for name, b in G.named_buffers():
            if name.endswith("w_avg"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.5)
            elif name.endswith("magnitude_ema"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g) * 1.5)


def _fixture_configs(repo_kind: str) -> list[tuple[str, str, dict]]:
    """Tiny versions for tests/fixtures/original (kept small: they are committed)."""
    if repo_kind == "stylegan2-ada":
        return [("sg2ada-cond-skip-16", "networks", dict(
            z_dim=8, c_dim=3, w_dim=8, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(channel_base=128, channel_max=16, num_fp16_res=1, conv_clamp=256)))]
    return [
        ("sg3-t-16", "networks_stylegan3", dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                                mapping_kwargs=dict(num_layers=2), channel_base=256,
                                                channel_max=16, magnitude_ema_beta=0.999, conv_clamp=256)),
        ("sg3-r-16", "networks_stylegan3", dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3,
                                                mapping_kwargs=dict(num_layers=2), channel_base=512,
                                                channel_max=32, magnitude_ema_beta=0.999, conv_kernel=1,
                                                use_radial_filters=True)),
    ]


def _full_size_configs(repo_kind: str) -> list[tuple[str, str, dict]]:
    """The released networks' shapes (random weights): FFHQ-1024 StyleGAN2 (stylegan2-ada's paper1024), the
    stylegan3 repo's StyleGAN2 at 512, StyleGAN3-T and -R with full channels at 256 (their CPU reference ops
    take 20-80 s an image at 256; at 1024 minutes)."""
    if repo_kind == "stylegan2-ada":
        return [("sg2ada-ffhq1024-shape", "networks", dict(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, mapping_kwargs=dict(num_layers=8),
            synthesis_kwargs=dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)))]
    return [
        ("sg3repo-sg2-512-shape", "networks_stylegan2", dict(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=512, img_channels=3, mapping_kwargs=dict(num_layers=2),
            channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256)),
        ("sg3-t-256-shape", "networks_stylegan3", dict(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3, mapping_kwargs=dict(num_layers=2),
            channel_base=32768, channel_max=512, magnitude_ema_beta=0.999, conv_clamp=256)),
        ("sg3-r-256-shape", "networks_stylegan3", dict(
            z_dim=512, c_dim=0, w_dim=512, img_resolution=256, img_channels=3, mapping_kwargs=dict(num_layers=2),
            channel_base=65536, channel_max=1024, magnitude_ema_beta=0.999, conv_kernel=1, use_radial_filters=True,
            conv_clamp=256)),
    ]


def _nvlabs_configs(repo_kind: str) -> list[tuple[str, str, dict]]:
    """(case name, network module attribute, Generator kwargs) for the repository kind."""
    sg2_small = dict(channel_base=1024, channel_max=32)
    if repo_kind == "stylegan2-ada":
        return [
            ("sg2ada-skip-32", "networks", dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                                                mapping_kwargs=dict(num_layers=2),
                                                synthesis_kwargs=dict(sg2_small, num_fp16_res=2, conv_clamp=256))),
            ("sg2ada-cond-orig-16", "networks", dict(z_dim=16, c_dim=4, w_dim=24, img_resolution=16,
                                                     img_channels=3, mapping_kwargs=dict(num_layers=3),
                                                     synthesis_kwargs=dict(sg2_small, architecture="orig"))),
            ("sg2ada-resnet-16", "networks", dict(z_dim=16, c_dim=0, w_dim=16, img_resolution=16, img_channels=3,
                                                  mapping_kwargs=dict(num_layers=1),
                                                  synthesis_kwargs=dict(sg2_small, architecture="resnet"))),
        ]
    sg3_small = dict(channel_base=1024, channel_max=32, magnitude_ema_beta=0.999)
    return [
        ("sg3repo-sg2-skip-32", "networks_stylegan2", dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32,
                                                           img_channels=3, mapping_kwargs=dict(num_layers=2),
                                                           **sg2_small, num_fp16_res=2, conv_clamp=256)),
        ("sg3repo-sg2-cond-16", "networks_stylegan2", dict(z_dim=16, c_dim=3, w_dim=16, img_resolution=16,
                                                           img_channels=3, mapping_kwargs=dict(num_layers=2),
                                                           **sg2_small)),
        ("sg3-t-32", "networks_stylegan3", dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                                                mapping_kwargs=dict(num_layers=2), **sg3_small, conv_clamp=256)),
        ("sg3-t-cond-16", "networks_stylegan3", dict(z_dim=16, c_dim=3, w_dim=16, img_resolution=16,
                                                     img_channels=3, mapping_kwargs=dict(num_layers=2),
                                                     **sg3_small)),
        ("sg3-r-32", "networks_stylegan3", dict(z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3,
                                                mapping_kwargs=dict(num_layers=2), channel_base=2048,
                                                channel_max=64, magnitude_ema_beta=0.999, conv_kernel=1,
                                                use_radial_filters=True)),
    ]


def _make_nvlabs(repo_kind: str, work: Path, seeds: list[int], psis: list[float], fixtures: bool = False,
                 full_size: bool = False) -> list[dict]:
    import pickle

    import torch
    import dnnlib
    cases = []
    configs = _fixture_configs if fixtures else _full_size_configs if full_size else _nvlabs_configs
    for name, module, kwargs in configs(repo_kind):
        net = __import__(f"training.{module}", fromlist=["Generator"])
        kw = dict(kwargs)
        kw["mapping_kwargs"] = dnnlib.EasyDict(kw["mapping_kwargs"])
        if "synthesis_kwargs" in kw:
            kw["synthesis_kwargs"] = dnnlib.EasyDict(kw["synthesis_kwargs"])
        torch.manual_seed(0)
        G = net.Generator(**kw).eval().requires_grad_(False)
        _shake(G, 1)
        if module == "networks_stylegan3":             # a user transform on the input (rotate and shift)
            a = 0.3
            m = torch.tensor([[math.cos(a), -math.sin(a), 0.1], [math.sin(a), math.cos(a), -0.2], [0, 0, 1]])
            G.synthesis.input.transform.copy_(m)
        # A training snapshot's layout: the discriminator too (the loader must skip it), G beside G_ema.
        nets = __import__(f"training.{'networks' if repo_kind == 'stylegan2-ada' else 'networks_stylegan2'}",
                          fromlist=["Discriminator"])
        D = nets.Discriminator(c_dim=kw["c_dim"], img_resolution=kw["img_resolution"], img_channels=3,
                               channel_base=128 if fixtures else 1024, channel_max=16 if fixtures else 32)
        G_train = None if fixtures or full_size else net.Generator(**kw).train()
        if fixtures:
            _strip_sources()
        path = work / f"{name}.pkl"
        with open(path, "wb") as f:
            pickle.dump(dict(G=G_train, D=D, G_ema=G, augment_pipe=None,
                             training_set_kwargs=dnnlib.EasyDict(resolution=kw["img_resolution"])), f)
        cases += _reference_cases(name, path, G, work, seeds, psis, noises=("const",) if full_size else
                                  ("const", "none"))
    return cases


STRIPPED_SOURCE = "# NVlabs module source removed: this fixture keeps the pickle's structure and tensors only\n"


def _strip_sources() -> None:
    """Pickle persistent classes with a placeholder for their module source: committed fixtures hold no NVlabs code."""
    for mod in list(sys.modules.values()):
        if getattr(mod, "__name__", "").startswith("training."):
            for obj in vars(mod).values():
                if isinstance(obj, type) and hasattr(obj, "_orig_module_src"):
                    obj._orig_module_src = STRIPPED_SOURCE


def _load_nvlabs_pickle(path: Path, network: str):
    import pickle
    try:
        import legacy                                # NVlabs' own loader, when the checkout has it
        with open(path, "rb") as f:
            return legacy.load_network_pkl(f)[network]
    except ImportError:
        with open(path, "rb") as f:
            return pickle.load(f)[network]


def _make_checkpoint(path: Path, work: Path, seeds: list[int], psis: list[float]) -> list[dict]:
    G = _load_nvlabs_pickle(path, "G_ema").eval().requires_grad_(False).float()
    return _reference_cases(path.stem, path, G, work, seeds, psis)


def _reference_cases(name: str, path: Path, G, work: Path, seeds: list[int], psis: list[float],
                     noises: tuple[str, ...] = ("const", "none")) -> list[dict]:
    import numpy as np
    import torch
    cases = []
    classes = [None] if G.c_dim == 0 else [0, G.c_dim - 1]
    for seed in seeds:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
        for psi in psis:
            for cls in classes:
                c = torch.zeros(1, G.c_dim)
                if cls is not None:
                    c[0, cls] = 1
                for noise in noises:
                    with torch.no_grad():
                        img = G(z, c, truncation_psi=psi, noise_mode=noise, force_fp32=True)
                    ref = work / f"{name}-s{seed}-p{psi}-c{cls}-{noise}.npy"
                    np.save(ref, img.numpy().astype(np.float32))
                    cases.append(dict(name=name, file=str(path), seed=seed, psi=psi, cls=cls, noise=noise,
                                      ref=str(ref)))
    return cases


def _cpu_upfirdn2d(op, mod) -> None:
    """Early versions of rosinality's op/upfirdn2d.py always call the CUDA op; their own `upfirdn2d_native`
    (which expects NHWC and forgets to import F) is what later versions call on the CPU, wrapped as here."""
    import inspect

    import torch.nn.functional as F
    if "device.type" in inspect.getsource(mod.upfirdn2d):
        return                                          # a version with its own CPU path
    mod.F = F

    def upfirdn2d(input, kernel, up=1, down=1, pad=(0, 0)):
        _, channel, in_h, in_w = input.shape
        out = mod.upfirdn2d_native(input.reshape(-1, in_h, in_w, 1), kernel, up, up, down, down,
                                   pad[0], pad[1], pad[0], pad[1])
        return out.reshape(-1, channel, out.shape[1], out.shape[2])
    mod.upfirdn2d = op.upfirdn2d = upfirdn2d


def _make_rosinality(work: Path, seeds: list[int], psis: list[float]) -> list[dict]:
    import numpy as np
    import torch
    import torch.utils.cpp_extension
    torch.utils.cpp_extension.load = lambda *a, **k: None   # its CUDA ops; on the CPU the code uses native paths
    import op
    _cpu_upfirdn2d(op, sys.modules["op.upfirdn2d"])
    from model import Generator
    cases = []
    for name, size, style_dim, n_mlp, cm, with_avg in [("rosinality-32", 32, 32, 2, 1, True),
                                                       ("rosinality-64-noavg", 64, 16, 3, 2, False)]:
        torch.manual_seed(0)
        g = Generator(size, style_dim, n_mlp, channel_multiplier=cm).eval().requires_grad_(False)
        _shake(g, 2)
        ckpt = {"g_ema": g.state_dict()}
        latent_avg = None
        if with_avg:
            latent_avg = torch.randn(style_dim, generator=torch.Generator().manual_seed(3)) * 0.5
            ckpt["latent_avg"] = latent_avg
        path = work / f"{name}.pt"
        torch.save(ckpt, path)
        for seed in seeds:
            z = torch.from_numpy(np.random.RandomState(seed).randn(1, style_dim)).float()
            for psi in (psis if with_avg else [1.0]):
                with torch.no_grad():
                    img, _ = g([z], truncation=psi, truncation_latent=latent_avg, randomize_noise=False)
                ref = work / f"{name}-s{seed}-p{psi}.npy"
                np.save(ref, img.numpy().astype(np.float32))
                cases.append(dict(name=name, file=str(path), seed=seed, psi=psi, cls=None, noise="const",
                                  ref=str(ref)))
    return cases


def _make_torchvision(work: Path) -> list[dict]:
    """torchvision's googlenet, weights and batch-norm statistics shaken, and every dreamable layer's output."""
    import numpy as np
    import torch
    torch.library.register_fake = lambda *a, **k: (lambda f: f)   # its compiled ops (nms...) are not needed
    from torchvision.models import googlenet
    cases = []
    for transform in (True, False):
        torch.manual_seed(0)
        net = googlenet(weights=None, aux_logits=True, init_weights=True, transform_input=transform).eval()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
            for name, b in net.named_buffers():
                if name.endswith("running_mean"):
                    b.copy_(torch.randn(b.shape, generator=g) * 0.1)
                elif name.endswith("running_var"):
                    b.copy_(0.5 + torch.rand(b.shape, generator=g))
        name = f"googlenet-transform-{str(transform).lower()}"
        path = work / f"{name}.pth"
        torch.save(net.state_dict(), path)
        x = torch.randn(1, 3, 224, 224, generator=g)
        outputs = {}
        for layer in ("conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b",
                      "inception4c", "inception4d", "inception4e", "inception5a", "inception5b"):
            getattr(net, layer).register_forward_hook(lambda m, i, o, layer=layer: outputs.__setitem__(layer, o))
        with torch.no_grad():
            outputs["logits"] = net(x)
        np.save(work / f"{name}-input.npy", x.numpy())
        for layer, out in outputs.items():
            ref = work / f"{name}-{layer}.npy"
            np.save(ref, out.numpy())
            cases.append(dict(name=name, file=str(path), layer=layer, transform=transform,
                              input=str(work / f"{name}-input.npy"), ref=str(ref)))
    return cases


def child_main(kind: str, repo: str, work: str, seeds: list[int], psis: list[float], checkpoint: str | None,
               fixtures: bool, full_size: bool) -> None:
    sys.path.insert(0, repo)
    work_dir = Path(work)
    if checkpoint:
        cases = _make_checkpoint(Path(checkpoint), work_dir, seeds, psis)
    elif kind == "rosinality":
        cases = _make_rosinality(work_dir, seeds, psis)
    elif kind == "torchvision":
        cases = _make_torchvision(work_dir)
    else:
        cases = _make_nvlabs(kind, work_dir, seeds, psis, fixtures=fixtures, full_size=full_size)
    print(json.dumps(cases))


# ---------------------------------------------------------------------------------------------
# Parent side: vj only.

def compare(cases: list[dict], tol: float) -> bool:
    import numpy as np
    sys.path.insert(0, str(ROOT))
    from vj.models.sample import sample
    ok = True
    for case in cases:
        want = np.load(case["ref"])
        if "layer" in case:
            got, what = _googlenet_output(case), f"layer {case['layer']:<12}"
        else:
            got = sample(case["file"], seed=case["seed"], psi=case["psi"], class_idx=case["cls"],
                         noise=case["noise"])
            cls = "" if case["cls"] is None else f" class {case['cls']}"
            what = f"seed {case['seed']} psi {case['psi']}{cls} noise {case['noise']:<5}"
        err = float(np.abs(got - want).max()) if got.shape == want.shape else math.inf
        rms = float(np.sqrt(np.mean(want.astype(np.float64) ** 2)))
        good = err <= tol * max(rms, 1e-12)
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {case['name']:<22} {what}  max|diff| {err:.2e}  output rms {rms:.3f}  "
              f"shape {list(want.shape)}")
    if any(m.startswith(("torch_utils", "training", "dnnlib", "legacy", "torchvision")) for m in sys.modules):
        print("FAIL: the original code was imported into the comparing process")
        ok = False
    return ok


def _googlenet_output(case: dict):
    """vj's DeepDream backbone loading the torchvision state dict: a layer's output, or the logits."""
    import numpy as np
    import torch
    from vj.models.deepdream.backbone import load_googlenet
    net = load_googlenet(case["file"], transform_input=case["transform"]).module
    x = torch.from_numpy(np.load(case["input"]))
    with torch.no_grad():
        out = net(x) if case["layer"] == "logits" else net.features(x, case["layer"])
    return out.numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stylegan3", metavar="DIR", help="a checkout of NVlabs/stylegan3")
    ap.add_argument("--stylegan2-ada", metavar="DIR", help="a checkout of NVlabs/stylegan2-ada-pytorch")
    ap.add_argument("--rosinality", metavar="DIR", help="a checkout of rosinality/stylegan2-pytorch")
    ap.add_argument("--torchvision", action="store_true",
                    help="compare the DeepDream GoogLeNet with the installed torchvision's googlenet")
    ap.add_argument("--checkpoint", metavar="PKL", action="append", default=[],
                    help="a real NVlabs network pickle to compare (needs --stylegan3 or --stylegan2-ada); repeatable")
    ap.add_argument("--seeds", default="0,1,7", help="comma-separated seeds (default 0,1,7)")
    ap.add_argument("--psi", default="1,0.5", help="comma-separated truncation values (default 1,0.5)")
    ap.add_argument("--tol", type=float, default=1e-4, help="allowed max |diff| / output RMS (default 1e-4)")
    ap.add_argument("--work", metavar="DIR", help="where to write the networks and references (default: a temp dir)")
    ap.add_argument("--full-size", action="store_true",
                    help="the released networks' shapes (FFHQ-1024 StyleGAN2; StyleGAN3 at 256 with full "
                         "channels) with random weights, constant noise only; minutes on a CPU")
    ap.add_argument("--fixtures", action="store_true",
                    help="write tiny networks (module source stripped) and their references to --work, as "
                         "tests/fixtures/original, instead of comparing")
    ap.add_argument("--_child", nargs=2, metavar=("KIND", "REPO"), help=argparse.SUPPRESS)
    ap.add_argument("--_checkpoint", help=argparse.SUPPRESS)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    psis = [float(p) for p in args.psi.split(",")]
    if args._child:
        child_main(args._child[0], args._child[1], args.work, seeds, psis, args._checkpoint, args.fixtures,
                   args.full_size)
        return 0
    if args.fixtures and (args.rosinality or args.torchvision or args.checkpoint or not args.work):
        ap.error("--fixtures takes --stylegan3 and/or --stylegan2-ada and --work DIR only")

    repos = [(k, d) for k, d in (("stylegan3", args.stylegan3), ("stylegan2-ada", args.stylegan2_ada),
                                 ("rosinality", args.rosinality)) if d]
    if args.torchvision:
        repos.append(("torchvision", "."))
    if not repos:
        ap.error("give at least one of --stylegan3, --stylegan2-ada, --rosinality, --torchvision")
    if args.checkpoint and not any(k in ("stylegan3", "stylegan2-ada") for k, _ in repos):
        ap.error("--checkpoint needs --stylegan3 or --stylegan2-ada (the code that reads the pickle)")
    work = Path(args.work or tempfile.mkdtemp(prefix="vj-compare-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    jobs = []
    if args.checkpoint:
        kind, repo = next((k, d) for k, d in repos if k in ("stylegan3", "stylegan2-ada"))
        jobs += [(kind, repo, ["--_checkpoint", ck]) for ck in args.checkpoint]
    else:
        jobs += [(kind, repo, []) for kind, repo in repos]
    cases = []
    for kind, repo, extra in jobs:
        cmd = [sys.executable, __file__, "--_child", kind, str(Path(repo).resolve()), "--work", str(work),
               "--seeds", args.seeds, "--psi", args.psi, *extra, *(["--fixtures"] if args.fixtures else []),
               *(["--full-size"] if args.full_size else [])]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=str(work))
        if out.returncode != 0:
            print(f"FAIL: the original code ({kind}) failed:\n{out.stderr.strip()}")
            return 1
        cases += json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{len(cases)} cases; references and networks in {work}")
    ok = compare(cases, args.tol)
    if args.fixtures:
        for case in cases:
            case["file"], case["ref"] = Path(case["file"]).name, Path(case["ref"]).name
        (work / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
