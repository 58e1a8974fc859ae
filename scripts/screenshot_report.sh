#!/usr/bin/env bash
# Screenshot an HTML report in headless Chromium (Debian: apt-get install chromium), to look
# at what a reader sees. Usage: scripts/screenshot_report.sh report.html [out.png] [WxH]
# The first screenshot shows the summary and the table; the second has every row expanded.
set -euo pipefail
report=$(realpath "${1:?usage: screenshot_report.sh report.html [out.png] [WxH]}")
out=${2:-${report%.html}.png}
size=${3:-1400,1600}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "error: no chromium found (Debian: apt-get install chromium)" >&2
  exit 2
fi
shoot() {
  "$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$size" --screenshot="$2" "$1" >/dev/null 2>&1
}
shoot "file://$report" "$out"
shoot "file://$report?collapsed=none" "${out%.png}-expanded.png"
echo "$out ${out%.png}-expanded.png"
