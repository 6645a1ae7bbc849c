#!/usr/bin/env bash
# Install what the browser tests of the web console need (test/web): Debian's chromium and
# chromium-driver (selenium drives the system browser; nothing is downloaded at test time).
# Idempotent: returns at once when both are there. Where apt-get cannot be used (no root,
# no apt, no network) it says so in one line and returns 0: the browser tests then skip with
# that reason, except under CI=true, where they fail.
set -uo pipefail
have() { command -v "$1" >/dev/null 2>&1; }
if have chromium && have chromedriver; then
  exit 0
fi
if [ "${PERSON_SEARCH_NO_BROWSER:-}" = 1 ]; then
  echo "[setup] PERSON_SEARCH_NO_BROWSER=1: not installing chromium (browser tests will skip)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if have sudo && sudo -n true 2>/dev/null; then SUDO="sudo -n"; fi
fi
if ! have apt-get || { [ "$(id -u)" != 0 ] && [ -z "$SUDO" ]; }; then
  echo "[setup] chromium/chromium-driver not installed and apt-get is not usable here (needs root or sudo): the browser tests of test/web will skip" >&2
  exit 0
fi
echo "[setup] installing chromium and chromium-driver with apt-get (browser tests)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { $SUDO apt-get update -qq >/dev/null 2>&1 \
       && $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }; then
  echo "[setup] apt-get could not install chromium chromium-driver: the browser tests of test/web will skip" >&2
  exit 0
fi
have chromium && have chromedriver && echo "[setup] chromium $(chromium --version 2>/dev/null | awk '{print $2}') installed" >&2
exit 0
