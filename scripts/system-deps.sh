#!/usr/bin/env bash
# Installs the Debian packages the test suite talks to for real: Chromium (the HTML report is
# checked in a headless browser) and Prometheus (the /metrics endpoint is scraped by a real
# server). Does nothing when both are already there. Needs root (or sudo) and apt-get.
set -euo pipefail

packages=()
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v prometheus >/dev/null 2>&1 || packages+=(prometheus)
[ ${#packages[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "system-deps: need root or sudo to install ${packages[*]} with apt-get" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: apt-get not found; install ${packages[*]} yourself" >&2
  exit 1
fi

echo "== apt-get install ${packages[*]}"
install() {
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${packages[@]}" >/dev/null
}
# A fresh machine may have stale or no package lists: refresh once and retry.
install || { "${sudo[@]}" apt-get update -qq >/dev/null && install; }
