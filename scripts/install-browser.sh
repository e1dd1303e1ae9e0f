#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver, which the chat page's test (crates/server/tests/python/test_page.py)
# drives with Selenium, when they are missing. Fails loudly when they cannot be installed.
set -euo pipefail

if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=()
if [ "$(id -u)" != 0 ]; then
  SUDO=(sudo -n)
fi
if ! command -v apt-get >/dev/null; then
  echo "install-browser: no apt-get here: install chromium and its chromedriver yourself" >&2
  exit 1
fi
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver
chromium --version
chromedriver --version
