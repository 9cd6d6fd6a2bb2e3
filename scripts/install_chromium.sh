#!/usr/bin/env bash
# Headless Chromium for the listening-report tests (tests/evaluation/test_listening_report.py render report.html in it
# and check that every image and player loads): Debian's chromium package. Idempotent: does nothing if a
# chromium is already on PATH.
#   sudo bash scripts/install_chromium.sh
# Exit status 0: chromium is there; 3: it cannot be installed here (not root, or the package not installable).
set -euo pipefail

if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  echo "chromium: already installed"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium: needs root to install (apt-get install chromium)" >&2; exit 3
fi
export DEBIAN_FRONTEND=noninteractive
(apt-get update -qq && apt-get install -y -qq chromium) >/tmp/chromium-apt.log 2>&1 \
  || { echo "chromium: apt-get install failed (see /tmp/chromium-apt.log)" >&2; exit 3; }
echo "chromium: installed ($(chromium --version 2>/dev/null | tail -n 1))"
