"""`vj render --cluster` and `vj replay --cluster`: the command's inputs made a job and rendered on a cluster."""

from __future__ import annotations

from pathlib import Path

from vj.cluster.driver import render_job_on_cluster
from vj.cluster.job import render_job, replay_job
from vj.config import AudioConfig, RenderConfig
from vj.replay import LiveReplayProgram, ReplayProgram, replay_config
from vj.session import Session
from vj.show import RenderReport, TrackProgram, cut_track


def render_on_cluster(audio: str, out: Path | str, preset: str, render_cfg: RenderConfig, audio_cfg: AudioConfig, *,
                      cluster: str, start_s: float = 0.0, duration_s: float | None = None,
                      timeline: Path | str | None = None, **options) -> RenderReport:
    """`vj render` (with or without a timeline) on a cluster; `options` go to render_job_on_cluster."""
    from vj.timeline import load_timeline
    if timeline is not None:
        load_timeline(timeline)           # a timeline that does not parse fails here, before the cluster starts
    track = cut_track(audio, audio_cfg.sample_rate_hz, render_cfg.fps, start_s, duration_s)
    program = TrackProgram(track, render_cfg.fps, audio_cfg.sample_rate_hz)
    job, bundle = render_job(audio, preset, render_cfg, audio_cfg, track.n_frames, start_s=start_s,
                             duration_s=duration_s, timeline=timeline)
    return render_job_on_cluster(job, bundle, out, program.audio, address=cluster, audio_tail=program.audio_tail(),
                                 **options)


def replay_on_cluster(folder: str | Path, out: str | Path, *, cluster: str, fps: float | None,
                      size: tuple[int, int] | None = None, render_scale: float | None = None, codec: str = "h264",
                      encoder_preset: str | None = None, **options) -> RenderReport:
    """`vj replay` on a cluster, at `fps` or (None) the live frame sequence: the session folder goes to the workers
    whole."""
    session = Session(folder)
    samples = session.audio()
    cfg = replay_config(session, size, render_scale, encoder_preset)
    if fps is None:
        program = LiveReplayProgram(session, None, samples, float(session.settings.get("record_fps") or cfg.fps))
        tail, tick = program.audio_tail(), program.tick
    else:
        program, tail, tick = ReplayProgram(session, None, samples, fps), None, None
    job, bundle = replay_job(folder, cfg, session.audio_config, program.fps, program.n_frames, codec=codec,
                             live=fps is None)
    return render_job_on_cluster(job, bundle, out, program.audio, address=cluster, channels=samples.shape[1],
                                 audio_tail=tail, tick=tick, **options)
