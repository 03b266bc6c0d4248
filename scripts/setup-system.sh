#!/usr/bin/env bash
# Installs the system packages vj needs on Debian/Ubuntu (apt, as root); otherwise lists them and stops.
set -euo pipefail

# GL through Mesa (EGL headless, GLX under Xvfb), a virtual display for window tests, audio servers and
# PortAudio for live input, liblo's oscsend/oscdump and ffprobe for the tests, xwd for screenshots,
# chromium and its driver for the web page test, iproute2 for the tests' loopback-only network namespace,
# FluidSynth and a small General MIDI soundfont for the beat corpus test (scripts/beat-corpus.py), libopenmpt
# for the tracker-module corpus test (scripts/module-corpus.py).
PKGS=(
  libegl1 libegl-mesa0 libgl1 libglx-mesa0 libgl1-mesa-dri
  xvfb xauth x11-apps
  libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins alsa-utils jackd2
  liblo-tools ffmpeg sox
  iproute2
  chromium chromium-driver
  fluidsynth timgm6mb-soundfont libopenmpt0
)

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "vj setup: not a Debian/Ubuntu system; install the equivalents of: ${PKGS[*]} (and python3 >= 3.11 with venv)" >&2
  exit 0
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "vj setup: these system packages are missing: ${missing[*]}" >&2
  echo "vj setup: install them as root:  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "vj setup: installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
