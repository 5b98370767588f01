#!/usr/bin/env bash
# Make sure a Chromium that Playwright can drive exists. Order: $WEBML_CHROMIUM, a chromium or
# chrome on PATH, a Playwright-managed Chromium; otherwise install Debian's chromium when running
# as root with apt-get. Playwright's own download (`playwright install`) is not used because it
# needs hosts that closed networks cannot reach.
#
# Apps ship a Traditional Chinese (zh-TW) interface; without a CJK font, screenshots of it show
# empty boxes. As root with apt-get, Debian's fonts-wqy-zenhei (about 7 MB) is installed when
# fontconfig lists no font for zh-TW. A failed font install only prints a warning.
set -euo pipefail

ensure_cjk_font() {
  if ! command -v fc-list >/dev/null || [ -n "$(fc-list :lang=zh-tw family 2>/dev/null | head -n 1)" ]; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "no font for Traditional Chinese found: installing Debian's fonts-wqy-zenhei" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y fonts-wqy-zenhei >/dev/null 2>&1 || {
      apt-get update >/dev/null 2>&1 && apt-get install -y fonts-wqy-zenhei >/dev/null 2>&1
    } || echo "warning: could not install fonts-wqy-zenhei; zh-TW screenshots will show empty boxes" >&2
  fi
}
ensure_cjk_font

works() {
  "$1" --headless --no-sandbox --disable-gpu --version >/dev/null 2>&1 || "$1" --version >/dev/null 2>&1
}

if [ -n "${WEBML_CHROMIUM:-}" ]; then
  if works "$WEBML_CHROMIUM"; then exit 0; fi
  echo "WEBML_CHROMIUM=$WEBML_CHROMIUM does not run; point it at a Chromium or Chrome executable" >&2
  exit 1
fi
for name in chromium chromium-browser google-chrome google-chrome-stable chrome; do
  if path=$(command -v "$name") && works "$path"; then exit 0; fi
done
if compgen -G "${PLAYWRIGHT_BROWSERS_PATH:-$HOME/.cache/ms-playwright}/chromium-*" >/dev/null; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "no Chromium found: installing Debian's chromium package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y chromium >/dev/null 2>&1 || {
    apt-get update >/dev/null
    apt-get install -y chromium >/dev/null
  }
  command -v chromium >/dev/null && exit 0
fi
echo "no Chromium found: install one (Debian: apt-get install chromium), set WEBML_CHROMIUM to its path," >&2
echo "or run \`.venv/bin/playwright install chromium\` where the download hosts are reachable" >&2
exit 1
