#!/usr/bin/env bash
# Installs the Debian packages Linkup builds, tests and runs with (DESIGN §4).
# Idempotent: when every package is present it only runs dpkg-query and exits.
# Usage: scripts/deps.sh [--bench]   (--bench adds nginx, wrk and friends)
set -euo pipefail

pkgs=(
    build-essential cmake pkg-config gcc clang libclang-rt-14-dev clang-format
    libevent-dev libssl-dev libyaml-dev libjansson-dev libpcre2-dev libidn2-dev
    libsqlite3-dev libhiredis-dev libnghttp2-dev libcurl4-openssl-dev
    libcurl4 # libcurl.so.4, dlopen()ed by the CLI and the worker's cache (lib/net/curl_dl.c)
    redis-server dnsutils curl ca-certificates help2man libcap2-bin tar
    python3 python3-pytest python3-websockets python3-dnspython
    zsh # the zsh completion script is run by tests/e2e/test_cli_lifecycle.py
)
if [ "${1:-}" = "--bench" ]; then
    pkgs+=(nginx wrk nghttp2-client hyperfine)
fi

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *"install ok installed"*) ;;
    *) missing+=("$p") ;;
    esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root or sudo to install packages" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
