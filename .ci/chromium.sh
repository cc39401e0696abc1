#!/usr/bin/env bash
# Make sure the system's Chromium is there for the dashboard's browser tests (Playwright drives it via
# executable_path). Installs Debian's package only when it is missing; Playwright never downloads a
# browser of its own (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD, and `playwright install` is never run).
# Idempotent: does nothing when /usr/bin/chromium (or $HWNAS_TEST_CHROMIUM) exists.
set -euo pipefail
CHROMIUM="${HWNAS_TEST_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
  echo "chromium: $CHROMIUM"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
if [ ! -x "$CHROMIUM" ]; then
  echo "chromium: installed Debian's package but $CHROMIUM is still missing" >&2
  exit 1
fi
echo "chromium: installed $CHROMIUM"
