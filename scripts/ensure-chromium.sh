#!/usr/bin/env bash
# Make sure Debian's Chromium is installed at /usr/bin/chromium (used by the dashboard's browser
# test, test/ui/browser.test.ts). Quick when it is already there. Installs it through apt when we
# are root and apt-get exists; otherwise prints how to install it and exits 1 (the test then skips).
#
#   scripts/ensure-chromium.sh          # exit 0 when /usr/bin/chromium is usable
set -euo pipefail

CHROMIUM=${FLEXVID_CHROMIUM:-/usr/bin/chromium}

if [ -x "$CHROMIUM" ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "flexvid: installing Debian's chromium for the dashboard browser test (one time, a few minutes)…" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Try without refreshing the package lists first (fast when they are recent), then with.
  if ! apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >&2; then
    apt-get update -qq >&2
    apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core >&2
  fi
  if [ -x "$CHROMIUM" ]; then
    exit 0
  fi
  echo "flexvid: apt installed chromium but $CHROMIUM is still missing" >&2
  exit 1
fi

echo "flexvid: $CHROMIUM not found and cannot be installed here (needs root and apt-get)." >&2
echo "  Install it with: sudo apt-get install -y chromium" >&2
exit 1
