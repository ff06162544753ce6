#!/usr/bin/env bash
# Prepares what the dashboard's browser test (tests/dashboard_browser.rs, which runs
# tests/browser/dashboard.test.mjs) needs: Debian's chromium, a Chinese font so the
# page's Chinese text renders in the screenshots, Node 20+ with npm, and
# playwright-core installed from tests/browser/package-lock.json.
#
# Idempotent and cheap to rerun: apt-get runs only for a missing package (as root,
# or through sudo without a password), and `npm ci` only when the lock file
# differs from the one last installed (a copy is kept in node_modules). Prints the
# browser's path last, for EGRET_CHROMIUM.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium="${EGRET_CHROMIUM:-/usr/bin/chromium}"
browser_dir=tests/browser

missing=()
[ -x "$chromium" ] || missing+=(chromium)
# Without a CJK font the Chinese view is drawn as empty boxes.
fc-list :lang=zh 2>/dev/null | grep -q . || missing+=(fonts-wqy-microhei)
{ command -v node && command -v npm; } >/dev/null 2>&1 || missing+=(nodejs npm)

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        as_root=(env)
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        as_root=(sudo -n env)
    else
        echo "browser-setup.sh: ${missing[*]} missing, and this is neither root nor allowed sudo: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "installing ${missing[*]} (apt-get)" >&2
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

if [ ! -x "$chromium" ]; then
    echo "browser-setup.sh: no browser at $chromium after installing chromium" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
    echo "browser-setup.sh: node $(node --version) is too old; playwright-core needs Node 20 or newer" >&2
    exit 1
fi

stamp="$browser_dir/node_modules/.egret-package-lock.json"
if [ -f "$stamp" ] && cmp -s "$stamp" "$browser_dir/package-lock.json"; then
    echo "$browser_dir/node_modules is up to date" >&2
else
    echo "npm ci in $browser_dir" >&2
    # No package of this test needs an install script; none may run.
    (cd "$browser_dir" && npm ci --no-audit --no-fund --ignore-scripts >&2)
    # Written only after a successful install, so a broken one is retried next time.
    cp "$browser_dir/package-lock.json" "$stamp"
fi

echo "$chromium"
