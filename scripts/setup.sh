#!/usr/bin/env bash
# One command on a fresh Debian 12 machine: dependencies, build, and the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
build/src/lcq demo
