"""The `pulse` fixture: a PulseAudio user daemon with a null sink, its monitor the default input (`pulse`).

    from pulse_server import pulse  # noqa: F401  (fixture)

XDG_RUNTIME_DIR points at the server's own runtime dir while the test runs (ALSA's pulse plugin reads it).
"""

import pytest

from vj.audio.servers import PulseServer
from vj.audio.sources import rescan_devices


@pytest.fixture
def pulse(tmp_path):
    if not PulseServer.installed():
        pytest.skip("pulseaudio / paplay not installed")
    server = PulseServer(str(tmp_path / "xdg"))
    try:
        server.start()
        rescan_devices()
        yield server
    finally:
        server.close()
        rescan_devices()
