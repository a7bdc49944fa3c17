#!/usr/bin/env bash
# Configures and builds lcq into build/ (Release). Extra arguments go to cmake's configure step,
# e.g. scripts/build.sh -DCMAKE_PREFIX_PATH=/opt/libtorch for another libtorch.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build build
