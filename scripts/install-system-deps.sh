#!/usr/bin/env bash
# Installs the system packages that building mars-llama (llama.cpp via the llama-cpp-2 crate) and
# scripts/build-llama-server.sh need: cmake, a C/C++ toolchain, clang and libclang (bindgen), and
# unzip-free Python for the model fetch. Idempotent: when every package is present it does no
# network access and returns at once. Debian/Ubuntu (apt-get) only; run as root or with sudo.
set -euo pipefail

packages=(cmake clang libclang-dev g++ make pkg-config python3 python3-pip)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        # python3/pip may come from elsewhere (pyenv, a venv): accept a working command.
        case "$pkg" in
            python3) command -v python3 >/dev/null 2>&1 && continue ;;
            python3-pip) python3 -m pip --version >/dev/null 2>&1 && continue ;;
        esac
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: all present (${packages[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: missing ${missing[*]} and no apt-get; install them with your package manager" >&2
    exit 1
fi

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

echo "install-system-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
