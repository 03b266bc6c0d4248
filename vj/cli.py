"""argv -> config -> the show; no logic of its own. Errors are one clear line and a non-zero exit."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from vj.allocator import limit_arenas
from vj.config import AudioConfig, ControlConfig, RenderConfig

DEMO_SECONDS = 40.0


class UsageError(Exception):
    """A command-line value that cannot be used."""


def _size(text: str) -> tuple[int, int]:
    """WxH, or N for NxN."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
        if len(parts) not in (1, 2):
            raise ValueError(text)
        w, h = parts[0], parts[-1]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 1280x720, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size {w}x{h} is outside 16..8192")
    return w, h


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _scale(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"render scale must be 'auto' or a number, got {text!r}") from None
    if not 0.1 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"render scale must be between 0.1 and 1, got {text}")
    return v


def _channels(text: str) -> tuple[int, ...]:
    try:
        chans = tuple(int(c) - 1 for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"channels look like 1 or 3,4; got {text!r}") from None
    if not chans or min(chans) < 0 or len(chans) > 2:
        raise argparse.ArgumentTypeError(f"give one or two channels, counting from 1; got {text!r}")
    return chans


def _render_cfg(args) -> RenderConfig:
    w, h = args.size
    mw, mh = getattr(args, "model_size", None) or (RenderConfig.model_width_px, RenderConfig.model_height_px)
    return RenderConfig(width_px=w, height_px=h, fps=getattr(args, "fps", 30.0),
                        model_width_px=mw, model_height_px=mh,
                        render_scale=getattr(args, "render_scale", None),
                        frame_path=getattr(args, "frame_path", None) or "auto",
                        encoder_preset=getattr(args, "encoder_preset", "quick"))


# The recorder's presets (vj.output.recorder.ENCODER_PRESETS), named here so that `vj --help` needs no PyAV.
ENCODER_PRESETS = ("quick", "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                   "veryslow")


FRAME_PATH_HELP = ("how frames a model renders on a GPU reach the shaders: interop (CUDA-GL, never through host "
                   "memory), pinned (8-bit through page-locked host memory), host (float through host memory); "
                   "auto (default): interop where GL runs on an NVIDIA driver, else pinned. CUDA only")
MODEL_SIZE_HELP = ("size of the model's frames for scenes whose [model] table gives no size (default 256x144; "
                   "larger is for a GPU: StyleGAN 1024x576, DeepDream 1280x720)")
FRAME_PATHS = ("auto", "host", "pinned", "interop")   # vj.models.worker.FRAME_PATHS, without importing torch
SCALE_HELP = ("shader chain resolution as a fraction of --size; 'auto' (default): 1 on a GPU, "
              "0.4 on a software rasteriser")


def _cluster_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("cluster (Ray; docs/CLUSTER.md)")
    g.add_argument("--cluster", metavar="WHERE",
                   help="render in chunks on Ray: local (this machine's cores), auto (the cluster this machine "
                        "joined), HOST:PORT (a cluster's head) or ray://HOST:PORT (Ray Client)")
    g.add_argument("--chunk-s", type=_positive, default=30.0, metavar="S",
                   help="seconds of output a chunk (default 30)")
    g.add_argument("--warm-s", type=float, default=3.0, metavar="S",
                   help="frames rendered before a chunk where pictures feed back (shader feedback, DeepDream), "
                        "in seconds (default 3)")
    g.add_argument("--overlap-s", type=float, default=0.5, metavar="S",
                   help="cross-fade between such chunks (default 0.5 s)")
    g.add_argument("--resume", action="store_true",
                   help="reuse the chunks a stopped cluster render left in OUTPUT.vjchunks/")
    g.add_argument("--stall-s", type=_positive, default=600.0, metavar="S",
                   help="give up when the cluster has shown no progress for S seconds (default 600)")


def _on_cluster(fn, args, *fn_args, **fn_kwargs):
    """A cluster render or replay, its Ray driver in a child process (vj.cluster.isolate)."""
    if args.warm_s < 0 or args.overlap_s < 0:
        raise UsageError("--warm-s and --overlap-s must be 0 or more")
    from vj.cluster.driver import remove_partial
    from vj.cluster.isolate import run_isolated
    return run_isolated(fn, *fn_args, cluster=args.cluster, chunk_s=args.chunk_s, warm_s=args.warm_s,
                        overlap_s=args.overlap_s, resume=args.resume, progress=False if args.no_progress else None,
                        stall_s=args.stall_s, on_lost=lambda: remove_partial(args.output), **fn_kwargs)


def _render_options(parser: argparse.ArgumentParser) -> None:
    """--render-scale, --model-size and --frame-path, the same for run, render and bench."""
    parser.add_argument("--render-scale", type=_scale, default=None, metavar="auto|S", help=SCALE_HELP)
    parser.add_argument("--model-size", type=_size, default=None, metavar="WxH", help=MODEL_SIZE_HELP)
    parser.add_argument("--frame-path", choices=FRAME_PATHS, default="auto", help=FRAME_PATH_HELP)


def _control_cfg(args) -> ControlConfig:
    from vj.control.osc import AllowList, parse_target
    allow = tuple(a.strip() for a in args.osc_allow.split(",") if a.strip())
    try:
        AllowList(allow)
        feedback = tuple(parse_target(t) for t in args.osc_feedback)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return ControlConfig(osc_host=args.osc_host, osc_port=args.osc_port, osc_allow=allow, osc_feedback=feedback,
                         oscquery_port=args.oscquery_port, mdns=not args.no_mdns, web=args.web,
                         web_port=args.web_port, midi_port=args.midi, midi_map=args.midi_map,
                         midi_api=args.midi_api)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vj", description="Real-time VJ engine: neural visuals played to music.")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    ap.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="live output in a window")
    run.add_argument("--preset", default="default", help="preset name (in presets/) or a .toml file")
    run.add_argument("--fetch", action="store_true",
                     help="download the catalog models the preset names (catalog:NAME) that are not here yet")
    run.add_argument("--audio", default="demo", help="input device name or index, an audio file, or 'demo'")
    run.add_argument("--fullscreen", nargs="?", const=0, type=int, metavar="MONITOR",
                     help="fullscreen on a monitor (index from `vj devices`, default 0)")
    run.add_argument("--outputs", type=Path, metavar="FILE",
                     help="projector outputs (TOML, docs/OUTPUTS.md): a window per output, warped, blended, masked")
    run.add_argument("--size", type=_size, default=(1280, 720), help="render size WxH (default 1280x720)")
    run.add_argument("--fps", type=_positive, default=30.0, help="recording frame rate (default 30)")
    _render_options(run)
    run.add_argument("--link", action="store_true",
                     help="join the Ableton Link session: while peers are there, tempo and beat come from it")
    run.add_argument("--link-quantum", type=int, default=4, metavar="BEATS", help="beats per bar in Link (default 4)")
    run.add_argument("--ndi", nargs="?", const="vj", metavar="NAME",
                     help="publish the output (without the HUD) as an NDI source (default name: vj)")
    run.add_argument("--ndi-audio", action="store_true", help="send the show's audio with the NDI video")
    run.add_argument("--share-via", choices=("ndi", "syphon", "spout"), default="ndi",
                     help="what --ndi publishes through: ndi (default), syphon (macOS) or spout (Windows); "
                          "Syphon and Spout are untested")
    run.add_argument("--midi-clock-out", metavar="PORT",
                     help="send MIDI clock (24 ppq, start/stop, song position) to this output port (name or part)")
    run.add_argument("--encoder-preset", choices=ENCODER_PRESETS, default="ultrafast",
                     help="x264 preset for --record (default ultrafast: the show keeps the cores)")
    run.add_argument("--record", type=Path, metavar="FILE", help="record the show to an MP4 file (MKV with ffv1)")
    run.add_argument("--record-codec", choices=("h264", "ffv1"), default="h264",
                     help="h264 (MP4, default) or ffv1 (lossless RGB in MKV with FLAC audio, for editing)")
    run.add_argument("--record-size", type=_size, metavar="WxH", help="recording size (default: --size)")
    run.add_argument("--record-fps", type=_positive, metavar="N", help="recording frame rate (default: --fps)")
    run.add_argument("--session", nargs="?", const="", type=str, metavar="DIR",
                     help="write a session folder (audio, control events, presets, shaders) for `vj replay`; "
                          "without DIR: vj-session-DATE-TIME")
    run.add_argument("--osc-port", type=int, default=9000, help="OSC UDP port (0: off; default 9000)")
    run.add_argument("--osc-host", default="127.0.0.1",
                     help="listen address of OSC, OSCQuery and the web page (default 127.0.0.1)")
    run.add_argument("--osc-allow", default="", metavar="IP,NET", help="only these clients may control vj")
    run.add_argument("--osc-feedback", action="append", default=[], metavar="HOST:PORT",
                     help="always send OSC feedback there (repeatable)")
    run.add_argument("--oscquery-port", type=int, default=9001, help="OSCQuery HTTP/WebSocket port (0: off)")
    run.add_argument("--no-mdns", action="store_true", help="do not advertise over mDNS/zeroconf")
    run.add_argument("--web", action="store_true", help="serve the control page on 127.0.0.1 (see --web-port)")
    run.add_argument("--web-port", type=int, default=8080, help="web control page port (default 8080)")
    run.add_argument("--sample-rate", type=int, default=48000, metavar="HZ", help="audio input rate (default 48000)")
    run.add_argument("--beats-from", choices=("onsets", "network"), default="onsets",
                     help="beat tracking from onset strength (default) or from vj's beat network (docs/BEAT_CORPUS.md)")
    run.add_argument("--block-size", type=int, default=256, metavar="FRAMES",
                     help="audio callback block (default 256 frames, 5.3 ms at 48 kHz)")
    run.add_argument("--audio-channels", type=_channels, metavar="N[,M]",
                     help="input channels to use, 1-based (e.g. 3,4 for a stereo pair); mixed to mono for analysis")
    run.add_argument("--midi", metavar="PORT", help="MIDI input by name (part of it is enough; '' the first)")
    run.add_argument("--midi-map", metavar="FILE", help="MIDI mapping TOML (a path or a name in midi/, e.g. generic)")
    run.add_argument("--midi-api", choices=("auto", "alsa", "jack"), default="auto", help="MIDI system (default auto)")
    run.add_argument("--hud", action="store_true", help="start with the HUD shown (key h toggles it)")
    run.add_argument("--duration", type=_positive, metavar="S", help="stop after S seconds")
    run.add_argument("--screenshot", type=Path, metavar="PNG", help="save the last frame as PNG on exit")
    run.add_argument("--no-supervise", action="store_true",
                     help="run the show in this process: no supervisor to restart it after a crash")
    # Between the supervisor and its child (vj.supervisor): the state file the child keeps current, and a
    # spare child that imports everything, then waits on stdin to take over from that file.
    run.add_argument("--state-file", type=Path, help=argparse.SUPPRESS)
    run.add_argument("--standby", action="store_true", help=argparse.SUPPRESS)

    ren = sub.add_parser("render", help="render an audio file offline to a video file")
    ren.add_argument("audio", help="audio file (WAV/FLAC/MP3/OGG/M4A) or 'demo'")
    ren.add_argument("--beats-from", choices=("onsets", "network"), default="onsets",
                     help="beat tracking from onset strength (default) or from vj's beat network")
    # A string, not a Path: a trailing slash (frames/) asks for an image sequence and Path would drop it.
    ren.add_argument("-o", "--output", required=True,
                     help="output .mp4, or PNG frames + audio.wav: a folder (frames/) or a pattern (frames/%%06d.png)")
    ren.add_argument("--preset", default="default", help="preset name (in presets/) or a .toml file")
    ren.add_argument("--fetch", action="store_true",
                     help="download the catalog models the preset names (catalog:NAME) that are not here yet")
    ren.add_argument("--size", type=_size, default=(1280, 720), help="WxH (default 1280x720)")
    ren.add_argument("--fps", type=_positive, default=30.0, help="frames per second (default 30)")
    _render_options(ren)
    ren.add_argument("--encoder-preset", choices=ENCODER_PRESETS, default="quick",
                     help="quick (default: x264 ultrafast with deblocking and CABAC, about half veryfast's CPU) or "
                          "an x264 preset (veryfast and slower: smaller files on slow-moving scenes)")
    ren.add_argument("--start", type=float, default=0.0, metavar="S", help="start time in the audio (s)")
    ren.add_argument("--duration", type=_positive, metavar="S", help="length to render (s; default: to the end)")
    ren.add_argument("--no-progress", action="store_true", help="no progress bar")
    ren.add_argument("--timeline", type=Path, metavar="FILE",
                     help="timeline TOML: presets, params, ramps and models at times or bars (docs/TIMELINE.md)")
    _cluster_options(ren)

    rep = sub.add_parser("replay", help="render a session folder (`vj run --session`) again offline")
    rep.add_argument("session", type=Path, help="session folder")
    rep.add_argument("-o", "--output", type=Path, required=True, help="output .mp4 (.mkv with --codec ffv1)")
    rep.add_argument("--size", type=_size, help="WxH (default: the live size)")
    rep.add_argument("--fps", type=_positive, help="a fixed frame rate; default: the live frames again, written at "
                                                   "the live recording's rate (reproduces the live recording)")
    rep.add_argument("--render-scale", type=_scale, default=None, metavar="S", help="default: the live one")
    rep.add_argument("--codec", choices=("h264", "ffv1"), default="h264", help="h264 (default) or ffv1 (lossless)")
    rep.add_argument("--encoder-preset", choices=ENCODER_PRESETS, default="quick",
                     help="quick (default) or an x264 preset, as for vj render")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    _cluster_options(rep)

    demo = sub.add_parser("demo", help="the built-in demo: a window with a display, else demo.mp4")
    demo.add_argument("-o", "--output", type=Path, default=Path("demo.mp4"))
    demo.add_argument("--duration", type=_positive, default=DEMO_SECONDS, metavar="S")

    sub.add_parser("devices", help="list audio inputs and monitors")

    ana = sub.add_parser("analyze", help="beats, onsets and tempo of an audio file, with the live (causal) analysis")
    ana.add_argument("audio", help="audio file (WAV/FLAC/MP3/OGG/M4A)")
    ana.add_argument("--beats", type=Path, metavar="OUT.beats", help="write beat times: seconds, beat in bar")
    ana.add_argument("--onsets", type=Path, metavar="OUT.onsets", help="write onset times in seconds")
    ana.add_argument("--tempo", type=Path, metavar="OUT.tempo", help="write time, BPM and confidence at each beat")
    ana.add_argument("--beats-from", choices=("onsets", "network"), default="onsets",
                     help="beat tracking from onset strength (default) or from vj's beat network")

    bench = sub.add_parser("bench", help="per-stage timings (analysis, model, upload, shaders, readback, encode), "
                                         "or `vj bench latency`: audio-to-light latency through a real audio server")
    bench.add_argument("what", nargs="?", choices=("stages", "latency", "osc", "analysis", "model", "soak", "beats",
                                                   "outputs", "midiclock", "cluster"),
                       default="stages",
                       help="stages (default), latency, osc (10^6 hostile datagrams at the OSC server), "
                            "analysis (us per analysis hop by part, real-time factor), model (ms per frame "
                            "of a network per backend and precision), soak (a live show under real clients "
                            "for --minutes: memory, GL objects, threads, files and frame times per minute), "
                            "beats DIR (beat, downbeat scores and CPU cost on annotated audio), outputs (frame "
                            "times with no, one and two projection output windows), midiclock (MIDI clock out "
                            "jitter on JACK MIDI), or cluster (a render split over Ray against the whole one: "
                            "overhead, seams, per-frame and per-chunk costs and a projection for long 4K jobs)")
    bench.add_argument("folder", nargs="?", type=Path, default=None, metavar="DIR",
                       help="beats: a folder of audio files, each with NAME.beats beside it")
    bench.add_argument("--model", default="stylegan2",
                       help="model: stylegan2 or stylegan3 (random weights, published architecture at --size), "
                            "or any generator name (cppn, deepdream, ...)")
    bench.add_argument("--checkpoint", default=None, help="model: time this StyleGAN checkpoint instead")
    bench.add_argument("--beatnet", default="", metavar="WEIGHTS.npz",
                       help="beats: score vj with these beat network weights (scripts/train-beatnet.py) instead "
                            "of the shipped ones")
    bench.add_argument("--only", default="", metavar="NAME,...",
                       help="beats: score only these files (names without suffix)")
    bench.add_argument("--backends", default="eager,trace,compile,onnx,tensorrt",
                       help="model: comma-separated backends (default: all; those that cannot run here say why)")
    bench.add_argument("--precision", default="fp32,bf16,fp16", help="model: comma-separated precisions")
    bench.add_argument("--threads", type=int, default=None, help="model: torch threads (default: torch's)")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="model: a generator setting, as in a preset's [model] table; beats: a setting of vj's "
                            "analyzer or beat tracker, e.g. phase_hold_s=0 (repeatable)")
    bench.add_argument("--datagrams", type=int, default=1_000_000, help="osc: datagrams to send")
    bench.add_argument("--size", type=_size, default=None, help="WxH (stages, latency: default 1280x720); "
                       "model: the network's resolution N (default 256)")
    bench.add_argument("--frames", type=int, default=90, help="stages: frames per measurement")
    bench.add_argument("--preset", default=None, help="default: 'default' for stages, 'flash' for latency")
    bench.add_argument("--clicks", type=int, default=40, help="latency: clicks to time (default 40)")
    bench.add_argument("--beats", nargs="?", const="clicks", default=None, metavar="AUDIO",
                       help="latency: time flashes on the tracker's beats against the true beats instead: a 120 BPM "
                            "click track, or AUDIO with AUDIO.beats beside it (first --seconds)")
    bench.add_argument("--seconds", type=_positive, default=None,
                       help="latency --beats: seconds of audio (default 40); outputs: seconds per row (default 10); "
                            "midiclock: seconds per run (default 10)")
    bench.add_argument("--jack-period", type=int, choices=(32, 64, 128, 256, 512, 1024), default=256,
                       help="midiclock: the JACK server's period in frames at 48 kHz (default 256 = 5.3 ms)")
    bench.add_argument("--beats-from", choices=("onsets", "network"), default="onsets",
                       help="latency --beats: the show's beat tracking (default onsets)")
    bench.add_argument("--server", choices=("jack", "pulse"), default="jack",
                       help="latency: JACK dummy driver (default) or a PulseAudio null sink; "
                            "a running JACK server is used as it is")
    bench.add_argument("--block-size", type=int, default=256, metavar="FRAMES",
                       help="latency: audio block and JACK period (default 256)")
    bench.add_argument("--headless", action="store_true",
                       help="outputs: only the warp passes, headless (a GPU machine without a display)")
    bench.add_argument("--minutes", type=float, default=30.0, help="soak: how long the show runs (default 30)")
    bench.add_argument("--switch-every", type=float, default=10.0, metavar="S",
                       help="soak: seconds between scene changes (default 10)")
    bench.add_argument("--trace", default=None, metavar="mem[,maps][,trim][,py]",
                       help="soak: a line a minute on what the memory is made of: mem (smaps, malloc, torch, "
                            "Python objects), maps (anonymous mappings that came, went or grew), trim "
                            "(malloc_trim and what it gave back), py (tracemalloc sites; slows the show several times)")
    _render_options(bench)
    _cluster_options(bench)
    bench.set_defaults(chunk_s=None)       # cluster: 5 s chunks of its 20 s job unless told

    sh = sub.add_parser("shaders", help="shader tools")
    shsub = sh.add_subparsers(dest="shaders_command", metavar="ACTION")
    sht = shsub.add_parser("test", help="compile and render every ISF file in a folder")
    sht.add_argument("folder", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent / "shaders")
    sht.add_argument("--frames", type=int, default=3)

    model = sub.add_parser("model", help="model tools")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION")
    ms = msub.add_parser("sample", help="one raw generator output of a StyleGAN checkpoint (to compare with "
                                        "the original code)")
    ms.add_argument("checkpoint", type=Path, help="NVlabs network pickle (.pkl) or rosinality checkpoint (.pt)")
    ms.add_argument("--seed", type=int, default=0, help="z = numpy RandomState(SEED).randn(1, z_dim)")
    ms.add_argument("--psi", type=float, default=1.0, help="truncation psi (default 1)")
    ms.add_argument("--class", dest="class_idx", type=int, default=None, help="class of a conditional model")
    ms.add_argument("--noise", choices=("const", "random", "none"), default="const", help="noise mode")
    ms.add_argument("--network", default="G_ema", help="network inside an NVlabs pickle (default G_ema)")
    ms.add_argument("--device", default="cpu", help="cpu (default: float32 throughout) or cuda (as NVlabs' code "
                                                    "runs there: the num_fp16_res highest-resolution blocks in fp16)")
    ms.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.npy|OUT.png",
                    help=".npy: the NCHW float32 tensor as the network returns it; .png: NVlabs' 8-bit conversion")

    mods = sub.add_parser("models", help="the catalog of released networks: list, get (download and check), path, "
                                         "verify")
    modsub = mods.add_subparsers(dest="models_command", metavar="ACTION")
    for action, what in (("list", "every catalog model and whether it is here"),
                         ("get", "download a model (resumable) and check it before it is used"),
                         ("path", "print where a downloaded model is"),
                         ("verify", "check downloaded models again (size, sha256, that they load)")):
        mp = modsub.add_parser(action, help=what)
        if action in ("get", "path"):
            mp.add_argument("name", help="catalog name (vj models list)")
        elif action == "verify":
            mp.add_argument("name", nargs="?", default=None, help="one model (default: every one downloaded)")
        mp.add_argument("--models-dir", type=Path, default=None,
                        help="the models folder (default: $VJ_MODELS, else the cache folder)")

    outs = sub.add_parser("outputs", help="projection outputs tools (docs/OUTPUTS.md)")
    osub = outs.add_subparsers(dest="outputs_command", metavar="ACTION")
    orender = osub.add_parser("render", help="write each output's picture of an outputs file to DIR/<name>.png")
    orender.add_argument("file", type=Path, help="outputs file (TOML)")
    orender.add_argument("-o", "--output", type=Path, required=True, metavar="DIR", help="folder for the PNG files")
    orender.add_argument("--pattern", default="grid", metavar="grid|IMAGE.png",
                         help="the master picture: the calibration grid (default) or a PNG image")
    orender.add_argument("--size", type=_size, default=None, metavar="WxH",
                         help="master picture size for the grid (default 1920x1080)")

    presets = sub.add_parser("presets", help="list presets")
    presets.set_defaults(command="presets")
    return ap


def _fetch_models(preset: str) -> None:
    """--fetch: the catalog models the starting preset names, downloaded and checked before anything starts.

    Each in a `vj models get` of its own: checking a file loads it with torch, which `vj run`'s supervisor
    process (this one) must not carry through the show."""
    from vj.catalog.store import FetchError, preset_models
    from vj.presets import load_preset
    for name in preset_models(load_preset(preset).model_settings):
        get = [sys.executable, "-m", "vj.cli", "models", "get", name]
        if subprocess.run(get, stdout=subprocess.DEVNULL).returncode:
            raise FetchError(f"--fetch: {name} could not be fetched (the reason is above)")


def main(argv: list[str] | None = None) -> int:
    limit_arenas()                    # before any thread starts: a show that runs for hours (vj.allocator)
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.argv = argv                  # what a supervisor gives its child again
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="vj: %(levelname)s: %(message)s" if not args.verbose else
                        "%(asctime)s %(name)s %(levelname)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _dispatch(args) or 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if args.debug:
            raise
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        known = type(exc).__name__.endswith("Error") or isinstance(exc, (OSError, ValueError))
        print(f"vj: error: {msg}" + ("" if known else f" ({type(exc).__name__}; --debug for details)"),
              file=sys.stderr)
        return 1


def _dispatch(args) -> int:
    if getattr(args, "fetch", False):
        _fetch_models(args.preset)
    if getattr(args, "resume", False) and not args.cluster:
        raise UsageError("--resume continues a cluster render: give --cluster too")
    if args.command == "render" and args.cluster:
        from vj.cluster.commands import render_on_cluster
        rep = _on_cluster(render_on_cluster, args, args.audio, args.output, args.preset, _render_cfg(args),
                          AudioConfig(beats_from=args.beats_from), start_s=args.start, duration_s=args.duration,
                          timeline=args.timeline)
    elif args.command == "render":
        from vj.show import render_offline
        rep = render_offline(args.audio, args.output, args.preset, _render_cfg(args),
                             AudioConfig(beats_from=args.beats_from),
                             start_s=args.start, duration_s=args.duration,
                             progress=False if args.no_progress else None, timeline=args.timeline)
    if args.command == "render":
        print(f"wrote {rep.path}: {rep.frames} frames, {rep.duration_s:.2f} s at {args.fps:g} fps, "
              f"rendered in {rep.elapsed_s:.1f} s ({rep.fps:.1f} fps, {rep.duration_s / rep.elapsed_s:.2f}x real time)")
        return 0
    if args.command == "run":
        if not 8000 <= args.sample_rate <= 384000 or not 16 <= args.block_size <= 8192:
            raise UsageError("--sample-rate must be 8000..384000 Hz and --block-size 16..8192 frames")
        audio_cfg = AudioConfig(sample_rate_hz=args.sample_rate, block_frames=args.block_size,
                                input_channels=args.audio_channels, beats_from=args.beats_from)
        from vj.config import RecordConfig
        rw, rh = args.record_size or (None, None)
        session = None if args.session is None else Path(args.session or f"vj-session-{time.strftime('%Y%m%d-%H%M%S')}")
        control_cfg = _control_cfg(args)
        if args.outputs is not None:      # a broken outputs file stops the start with its file and line
            from vj.mapping.spec import load_outputs
            load_outputs(args.outputs)
        if args.link_quantum < 1 or (args.ndi is not None and not args.ndi.strip()):
            raise UsageError("--link-quantum must be 1 or more beats, and --ndi's name must not be empty")
        from vj.config import SyncConfig
        sync_cfg = SyncConfig(link=args.link, link_quantum=args.link_quantum, ndi_name=args.ndi,
                              ndi_audio=args.ndi_audio, share=args.share_via, midi_clock_port=args.midi_clock_out,
                              midi_clock_api=args.midi_api)
        if not args.no_supervise:
            from vj.supervisor import supervise
            return supervise(args.argv)
        if args.standby:      # a spare: imports and warms up on a niced thread, then waits to take over
            if args.state_file is None:
                raise UsageError("--standby needs --state-file")
            from vj.spare import stand_by
            reason = stand_by(args.state_file, sys.stdin, args.audio, audio_cfg, _render_cfg(args), args.preset)
            if reason is None:
                return 0
        from vj.show import run_live      # torch, GL, the window: most of a start (a spare did it while waiting)
        from vj.showstate import Resume
        live = dict(preset=args.preset, fullscreen=args.fullscreen, record=args.record, session=session,
                    hud=args.hud, duration_s=args.duration)
        resume = None
        if args.standby:
            resume = Resume.load(args.state_file, reason, **live)
            if resume.duration_s == 0:
                return 0                  # --duration was played out before it died (in its screenshot, say)
            live = resume.start_args()
        run_live(args.audio, live.pop("preset"), _render_cfg(args), audio_cfg, control_cfg,
                 screenshot=args.screenshot, state_file=args.state_file, resume=resume, outputs=args.outputs,
                 sync=sync_cfg,
                 record_cfg=RecordConfig(codec=args.record_codec, width_px=rw, height_px=rh, fps=args.record_fps),
                 **live)
        return 0
    if args.command == "replay":
        if args.cluster:
            from vj.cluster.commands import replay_on_cluster
            rep = _on_cluster(replay_on_cluster, args, args.session, args.output, size=args.size, fps=args.fps,
                              render_scale=args.render_scale, codec=args.codec, encoder_preset=args.encoder_preset)
        else:
            from vj.replay import replay_session
            rep = replay_session(args.session, args.output, size=args.size, fps=args.fps,
                                 render_scale=args.render_scale, codec=args.codec,
                                 encoder_preset=args.encoder_preset, progress=False if args.no_progress else None)
        print(f"wrote {rep.path}: {rep.frames} frames from {rep.duration_s:.2f} s of session, "
              f"rendered in {rep.elapsed_s:.1f} s ({rep.fps:.1f} fps)")
        return 0
    if args.command == "demo":
        return _demo(args)
    if args.command == "analyze":
        from vj.analyze import analyze_file
        rep = analyze_file(args.audio, args.beats, args.onsets, args.tempo,
                           audio_cfg=AudioConfig(beats_from=args.beats_from))
        print(f"{args.audio}: {len(rep.beats_s)} beats at {rep.bpm:.1f} BPM (median), {len(rep.onsets_s)} onsets in "
              f"{rep.duration_s:.1f} s; analysed at {rep.duration_s / max(rep.elapsed_s, 1e-9):.0f}x real time")
        return 0
    if args.command == "devices":
        return _devices()
    if args.command == "presets":
        from vj.presets import list_presets, load_preset
        for name in list_presets():
            print(f"{name:16s} {load_preset(name).description}")
        return 0
    if args.command == "bench":
        if args.what != "model" and args.size is None:
            args.size = {"soak": (960, 540), "cluster": (640, 360)}.get(args.what, (1280, 720))
        if args.what == "beats":
            if args.folder is None or not args.folder.is_dir():
                raise UsageError("usage: vj bench beats DIR (a folder of audio files with NAME.beats beside each)")
            from vj.bench_beats import print_beat_bench
            from vj.bench_beats import installed_trackers

            only = [n for n in args.only.split(",") if n]
            try:
                trackers = installed_trackers(args.beatnet, args.set)
            except ValueError as e:
                raise UsageError(str(e)) from None
            if args.set:
                print(f"vj bench beats: vj's analysis with {', '.join(args.set)}")
            print_beat_bench(args.folder, trackers, only=only)
            return 0
        if args.what == "analysis":
            from vj.audio.bench import print_analysis_bench
            print_analysis_bench(AudioConfig())
            return 0
        if args.what == "model":
            from vj.models.bench_model import run as bench_model
            w, h = args.size if args.size else (256, 256)
            return bench_model(args.model, w, args.backends, args.precision, max(1, min(args.frames, 1000)),
                               checkpoint=args.checkpoint, threads=args.threads, settings=args.set, height=h)
        if args.what == "osc":
            from vj.bench_osc import print_osc_bench
            return print_osc_bench(max(1, args.datagrams))
        if args.what == "latency":
            if not 16 <= args.block_size <= 8192 or args.clicks < 1:
                raise UsageError("--block-size must be 16..8192 frames and --clicks at least 1")
            if args.beats is not None:
                from vj.beat_latency import run_beat_latency_bench
                audio = None if args.beats == "clicks" else Path(args.beats)
                report = run_beat_latency_bench(_render_cfg(args), AudioConfig(block_frames=args.block_size,
                                                                                beats_from=args.beats_from),
                                                audio=audio, seconds=args.seconds or 40.0, server=args.server)
                return 0 if report.errors_ms else 1
            from vj.latency import run_latency_bench
            report = run_latency_bench(_render_cfg(args), AudioConfig(block_frames=args.block_size),
                                       clicks=args.clicks, preset=args.preset or "flash", server=args.server)
            return 0 if report.measured else 1
        if args.what == "midiclock":
            from vj.sync.bench import print_midiclock_bench
            print_midiclock_bench(seconds=args.seconds or 10.0, period_frames=args.jack_period)
            return 0
        if args.what == "outputs":
            from vj.bench_outputs import run_outputs_bench
            run_outputs_bench(_render_cfg(args), seconds=args.seconds or 10.0, headless=args.headless)
            return 0
        if args.what == "cluster":
            from vj.cluster.bench import run_cluster_bench
            run_cluster_bench(_render_cfg(args), preset=args.preset or "default", seconds=args.seconds or 20.0,
                              chunk_s=args.chunk_s or 5.0, warm_s=args.warm_s, overlap_s=args.overlap_s)
            return 0
        if args.what == "soak":
            if args.minutes <= 0 or args.switch_every <= 0:
                raise UsageError("--minutes and --switch-every must be positive")
            from vj.soak import run_soak
            run_soak(_render_cfg(args), minutes=args.minutes, switch_every_s=args.switch_every, trace=args.trace)
            return 0
        from vj.bench import run_bench
        run_bench(_render_cfg(args), AudioConfig(), frames=args.frames, preset=args.preset or "default")
        return 0
    if args.command == "model":
        if args.model_command != "sample":
            raise UsageError("usage: vj model sample CHECKPOINT --seed N -o OUT.npy|OUT.png")
        from vj.models.sample import sample, write_sample
        image = sample(args.checkpoint, seed=args.seed, psi=args.psi, class_idx=args.class_idx, noise=args.noise,
                       network=args.network, device=args.device)
        out = write_sample(image, args.output)
        print(f"vj model sample: {out} ({'x'.join(str(d) for d in image.shape)} float32, seed {args.seed}, "
              f"psi {args.psi:g}, noise {args.noise})")
        return 0
    if args.command == "models":
        from vj.catalog.cli import run_models
        if args.models_command is None:
            raise UsageError("usage: vj models list | get NAME | path NAME | verify [NAME] [--models-dir DIR]")
        return run_models(args.models_command, getattr(args, "name", None), args.models_dir)
    if args.command == "outputs":
        if args.outputs_command != "render":
            raise UsageError("usage: vj outputs render FILE -o DIR [--pattern grid|IMAGE.png] [--size WxH]")
        from vj.mapping.render import render_outputs
        for path in render_outputs(args.file, args.output, pattern=args.pattern, size_px=args.size):
            print(f"wrote {path}")
        return 0
    if args.command == "shaders":
        if args.shaders_command != "test":
            raise UsageError("usage: vj shaders test [FOLDER]")
        from vj.gfx.shadertest import main as shaders_test
        return shaders_test(args.folder, frames=args.frames)
    raise UsageError(f"unknown command {args.command}")


def _demo(args) -> int:
    from vj.output.window import WindowError
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        from vj.show import run_live
        try:
            print("vj demo: live window with the built-in demo track; keys: f fullscreen, escape quit, "
                  "left/right presets")
            run_live("demo", "default", RenderConfig(), AudioConfig(), ControlConfig())
            return 0
        except WindowError as exc:
            print(f"vj demo: no window ({exc}); rendering to {args.output} instead", file=sys.stderr)
    from vj.show import render_offline
    rep = render_offline("demo", args.output, "default", RenderConfig(), AudioConfig(), duration_s=args.duration,
                         progress=None)
    print(f"vj demo: wrote {rep.path.resolve()} ({rep.duration_s:.0f} s, 1280x720, {rep.frames} frames; "
          f"rendered at {rep.fps:.1f} fps).\n"
          "It shows the default scene: a neural CPPN generator walking its latent space, pushed by the "
          "bass and kicked by drum onsets, through feedback, kaleidoscope and bloom shaders and an output grade, "
          "to the built-in synthesized demo track (quiet pads, a 120 BPM groove, a breakdown, a faster drop) "
          "whose audio is muxed into the file.")
    return 0


def _devices() -> int:
    from vj.audio.sources import list_devices
    print("Audio inputs:")
    devs = list_devices()
    for d in devs:
        print(f"  [{d['index']}] {d['name']} ({d['hostapi']}, {d['channels']} ch, {d['default_samplerate']:g} Hz)")
    if not devs:
        print("  none found (use --audio FILE or --audio demo)")
    print("Monitors:")
    try:
        from vj.output.window import list_monitors
        mons = list_monitors()
    except Exception as exc:  # no display is a normal answer here
        mons, _ = [], exc
    for m in mons:
        print(f"  [{m['index']}] {m['name']} {m['width']}x{m['height']} @ {m['refresh_hz']} Hz")
    if not mons:
        print("  none (no display)")
    from vj.control.midi import list_midi_ports
    ports = list_midi_ports()
    print(f"MIDI inputs ({ports.api}):" if ports else "MIDI inputs:")
    for name in ports:
        print(f"  {name}")
    if not ports:
        print(f"  none ({ports.reason})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
