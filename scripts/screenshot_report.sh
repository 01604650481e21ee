#!/usr/bin/env bash
# Renders a self-contained report.html to a PNG with headless Chromium.
#   usage: scripts/screenshot_report.sh REPORT.html OUT.png
# Window size can be changed with WINDOW_SIZE=WIDTH,HEIGHT (default 1400,2200).
set -euo pipefail

if [[ $# -ne 2 ]]; then
    echo "usage: $0 REPORT.html OUT.png" >&2
    exit 2
fi
report=$1
out=$2
if [[ ! -f "$report" ]]; then
    echo "error: no such file: $report" >&2
    exit 2
fi

browser=""
for candidate in chromium chromium-browser; do
    if command -v "$candidate" >/dev/null 2>&1; then
        browser=$(command -v "$candidate")
        break
    fi
done
if [[ -z "$browser" ]]; then
    echo "error: chromium not found (looked for 'chromium' and 'chromium-browser')." >&2
    echo "Install it, e.g. on Debian/Ubuntu: apt-get install -y chromium" >&2
    exit 1
fi

abs_report=$(cd "$(dirname "$report")" && pwd)/$(basename "$report")
mkdir -p "$(dirname "$out")"
abs_out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --screenshot="$abs_out" --window-size="${WINDOW_SIZE:-1400,2200}" "file://$abs_report"

if [[ ! -s "$abs_out" ]]; then
    echo "error: $browser did not write $abs_out" >&2
    exit 1
fi
echo "wrote $abs_out"
