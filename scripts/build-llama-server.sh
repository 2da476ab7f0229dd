#!/usr/bin/env bash
# Builds llama.cpp's own llama-server from the llama.cpp sources vendored in the source
# distribution of llama-cpp-python==0.3.36, without native CPU flags, and caches the binary in
# ${XDG_CACHE_HOME:-~/.cache}/mars/llama-server/0.3.36/llama-server. Prints the binary's path on
# stdout (everything else goes to stderr); returns at once when the binary is already cached.
# Needs python3 with pip, cmake and a C++ compiler (scripts/install-system-deps.sh).
set -euo pipefail

version=0.3.36
if [[ "${XDG_CACHE_HOME:-}" == /* ]]; then
    cache="$XDG_CACHE_HOME"
else
    cache="$HOME/.cache"
fi
dest_dir="$cache/mars/llama-server/$version"
bin="$dest_dir/llama-server"
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/mars-llama-server.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The source archive (76 MB) is kept next to the binary, so a failed build does not fetch it again.
sdist="$dest_dir/sdist/llama_cpp_python-$version.tar.gz"
if [ ! -f "$sdist" ]; then
    echo "build-llama-server: fetching llama-cpp-python==$version (source, 76 MB)" >&2
    python3 -m pip download --no-deps --no-binary :all: --disable-pip-version-check --quiet \
        "llama-cpp-python==$version" -d "$work/sdist" >&2
    mkdir -p "$dest_dir/sdist"
    mv "$work/sdist/llama_cpp_python-$version.tar.gz" "$sdist"
fi
tar -xzf "$sdist" -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"

echo "build-llama-server: building llama-server (a few minutes)" >&2
cmake -S "$src" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_CURL=OFF >&2
cmake --build "$work/build" --target llama-server -j"$(nproc)" >&2

mkdir -p "$dest_dir"
install -m 755 "$work/build/bin/llama-server" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "$bin"
