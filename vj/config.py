"""Frozen start-up settings; units are in the field names."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AudioConfig:
    sample_rate_hz: int = 48000
    block_frames: int = 256          # audio callback block size
    hop_samples: int = 512           # analysis hop: 93.75 Hz at 48 kHz
    fft_samples: int = 2048          # analysis window
    n_bands: int = 48                # log-spaced spectrum bands
    ring_s: float = 4.0              # ring buffer length
    waveform_samples: int = 512      # samples kept for ISF `audio` inputs
    input_channels: tuple[int, ...] | None = None   # 0-based device channels; None: the first one or two
    beats_from: str = "onsets"       # "onsets" (the onset tracker) or "network" (vj/audio/beatnet.py + bar pointer)


@dataclass(frozen=True)
class RenderConfig:
    width_px: int = 1280
    height_px: int = 720
    fps: float = 30.0
    model_width_px: int = 256        # the generator renders small; shaders scale it up
    model_height_px: int = 144
    # The shader chain renders at this fraction of the output size and the master stage scales it up.
    # None: 1.0 on a GPU, 0.4 on a software rasteriser (llvmpipe), where fill rate is the bottleneck.
    render_scale: float | None = None
    # Encoder preset of the recorder (vj.output.recorder.ENCODER_PRESETS): quick for `vj render`, ultrafast
    # for live recording (the show must not share its cores with a slow encoder).
    encoder_preset: str = "quick"
    # How frames a model renders on a GPU reach GL (vj.models.worker.FRAME_PATHS): auto, host, pinned, interop.
    frame_path: str = "auto"

    def chain_size(self, scale: float) -> tuple[int, int]:
        """Even (width_px, height_px) of the chain for a render scale."""
        w = max(16, int(round(self.width_px * scale / 2)) * 2)
        h = max(16, int(round(self.height_px * scale / 2)) * 2)
        return min(w, self.width_px), min(h, self.height_px)


@dataclass(frozen=True)
class RecordConfig:
    """How the live show records (`--record`, /cmd/record/start): independent of the display's size and rate."""
    codec: str = "h264"              # h264 (MP4 + AAC) or ffv1 (lossless, MKV + FLAC) as vj.output.recorder.CODECS
    width_px: int | None = None      # None: the render size
    height_px: int | None = None
    fps: float | None = None         # None: RenderConfig.fps


@dataclass(frozen=True)
class ControlConfig:
    # One listen address for OSC, OSCQuery and the web page: never wider unless the user asks.
    osc_host: str = "127.0.0.1"
    osc_port: int = 9000             # UDP; 0 means: do not start the OSC server
    # Client addresses or networks ("192.168.1.20", "192.168.1.0/24") allowed to talk to any of the
    # control servers; empty: anyone who can reach the port. Others are dropped and counted.
    osc_allow: tuple[str, ...] = ()
    osc_feedback: tuple[tuple[str, int], ...] = ()   # (host, port) that always get feedback
    feedback_hz: float = 30.0        # rate of /feature/... feedback and of the web page's meters
    oscquery_port: int = 9001        # OSCQuery over HTTP + WebSocket; 0 means: off
    mdns: bool = True                # advertise _oscjson._tcp and _osc._udp (zeroconf); failure only warns
    web: bool = False                # serve the control page
    web_port: int = 8080
    midi_port: str | None = None     # MIDI input by name (substring; "" the first one); None: no MIDI
    midi_map: str | None = None      # mapping TOML (a path or a name in midi/)
    midi_api: str = "auto"           # auto, alsa or jack


@dataclass(frozen=True)
class SyncConfig:
    """Playing with the rest of the rig (vj.sync, vj.ndi): tempo and video shared with other software."""

    link: bool = False               # join the Ableton Link session
    link_quantum: int = 4            # beats per bar in the Link session
    ndi_name: str | None = None      # publish the output (no HUD) as this NDI source; None: no NDI out
    ndi_audio: bool = False          # ... with the show's audio
    share: str = "ndi"               # how --ndi publishes: ndi, or syphon (macOS) / spout (Windows), untested
    midi_clock_port: str | None = None   # send MIDI clock to this output port (substring; "" the first); None: off
    midi_clock_api: str = "auto"     # auto, alsa or jack


@dataclass(frozen=True)
class EngineConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    preset: str = "default"
    seed: int = 0
