#!/usr/bin/env bash
# What the tests need from Debian/Ubuntu, installed only where missing: the ffmpeg CLI
# (tests read files back with it), headless Chromium with its driver (tests/test_browser.py)
# and Xvfb (tests/test_readme.py runs the README's --show line on a virtual screen).
set -euo pipefail
if { command -v ffmpeg && command -v chromium && command -v chromedriver && command -v Xvfb; } >/dev/null; then
    exit 0
fi
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
packages=(ffmpeg chromium chromium-driver xvfb)
"${as_root[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null \
    || { "${as_root[@]}" apt-get update -qq && "${as_root[@]}" apt-get install -y -qq "${packages[@]}" >/dev/null; }
