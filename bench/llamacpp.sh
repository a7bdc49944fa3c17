#!/usr/bin/env bash
# The llama.cpp anchor: fetches the llama.cpp source vendored in the PyPI sdist of
# llama-cpp-python, builds its command-line tools into a cache directory outside the repo
# (never committed), and reuses that build when it is already there. docs/llamacpp.md.
#
#   bench/llamacpp.sh            # build if needed; print the version line and the bin directory
#   . bench/llamacpp.sh; llamacpp_ensure   # from another script: sets LLAMACPP_BIN, LLAMACPP_COMMIT
#
# Settings (environment):
#   LLAMACPP_PY_VERSION  llama-cpp-python release whose vendor/llama.cpp is built (default 0.3.36)
#   LCQ_CACHE            cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/lcq)
#   LLAMACPP_DIR         where the sdist, source and build go (default $LCQ_CACHE/llama.cpp/VERSION)
#   LLAMACPP_JOBS        parallel compile jobs (default 2: the machine is shared)
#   LLAMACPP_CMAKE_ARGS  extra CMake arguments
#   LCQ_NICE             niceness of the compilation (default 19)
# The build is native (-march=native) with AMX turned off: AMX tile loads raise SIGILL on
# some of this project's Intel VMs.

LLAMACPP_PY_VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
LCQ_CACHE="${LCQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/lcq}"
LLAMACPP_DIR="${LLAMACPP_DIR:-$LCQ_CACHE/llama.cpp/$LLAMACPP_PY_VERSION}"
LLAMACPP_BIN="$LLAMACPP_DIR/build/bin"
LLAMACPP_TOOLS=(llama-quantize llama-imatrix llama-perplexity llama-bench llama-simple)

llamacpp_die() {
  echo "llamacpp.sh: error: $*" >&2
  exit 1
}

# Prints the vendored llama.cpp commit of an extracted sdist (the submodule's HEAD, kept in
# the sdist's .git/modules), or "unknown".
llamacpp_source_commit() {
  local root=$1 head="$1/.git/modules/vendor/llama.cpp/HEAD"
  if command -v git >/dev/null && git -C "$root/vendor/llama.cpp" rev-parse HEAD 2>/dev/null; then
    return
  elif [ -f "$head" ] && grep -qE '^[0-9a-f]{40}$' "$head"; then
    cat "$head"
  else
    echo unknown
  fi
}

# ggml's version as its CMakeLists.txt sets it (GGML_VERSION_MAJOR/MINOR/PATCH).
llamacpp_ggml_version() {
  local f="$1/vendor/llama.cpp/ggml/CMakeLists.txt"
  [ -f "$f" ] || { echo unknown; return; }
  sed -nE 's/^set\(GGML_VERSION_(MAJOR|MINOR|PATCH) ([0-9]+)\)/\2/p' "$f" | paste -sd. -
}

llamacpp_fetch_source() {
  local sdist_dir="$LLAMACPP_DIR/sdist" src="$LLAMACPP_DIR/src"
  local tarball="$sdist_dir/llama_cpp_python-$LLAMACPP_PY_VERSION.tar.gz"
  if [ ! -f "$tarball" ]; then
    mkdir -p "$sdist_dir" || llamacpp_die "cannot create $sdist_dir"
    echo "llamacpp.sh: downloading the llama-cpp-python $LLAMACPP_PY_VERSION sdist from PyPI" >&2
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$sdist_dir" \
      "llama-cpp-python==$LLAMACPP_PY_VERSION" >&2 ||
      llamacpp_die "pip could not download llama-cpp-python==$LLAMACPP_PY_VERSION (sdist); set LLAMACPP_PY_VERSION to a published version"
    [ -f "$tarball" ] || llamacpp_die "pip did not leave $tarball (got: $(ls "$sdist_dir"))"
  fi
  if [ ! -f "$src/vendor/llama.cpp/CMakeLists.txt" ]; then
    local tmp
    tmp=$(mktemp -d "$LLAMACPP_DIR/extract.XXXXXX") || llamacpp_die "cannot create a directory in $LLAMACPP_DIR"
    tar xzf "$tarball" -C "$tmp" || { rm -rf "$tmp"; llamacpp_die "$tarball: cannot extract (corrupt download? delete it and rerun)"; }
    local top="$tmp/llama_cpp_python-$LLAMACPP_PY_VERSION"
    [ -f "$top/vendor/llama.cpp/CMakeLists.txt" ] ||
      { rm -rf "$tmp"; llamacpp_die "$tarball: no vendor/llama.cpp/CMakeLists.txt inside"; }
    rm -rf "$src"
    mv "$top" "$src" && rm -rf "$tmp"
  fi
}

# Compiler flags that keep AMX out of a -march=native build (GCC lets an explicit -mno-*
# override what -march enables, whatever their order); empty if the compiler lacks them.
llamacpp_no_amx_flags() {
  local flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  if echo 'int main(void){return 0;}' | ${CC:-cc} $flags -x c -fsyntax-only - 2>/dev/null; then echo "$flags"; fi
}

# Builds the tools if any is missing; sets LLAMACPP_BIN, LLAMACPP_COMMIT, LLAMACPP_GGML_VERSION
# and LLAMACPP_VERSION_LINE.
llamacpp_ensure() {
  command -v cmake >/dev/null || llamacpp_die "cmake is not installed (apt-get install cmake)"
  command -v python3 >/dev/null || llamacpp_die "python3 is not installed"
  mkdir -p "$LLAMACPP_DIR" || llamacpp_die "cannot create $LLAMACPP_DIR"
  local missing=0 t
  for t in "${LLAMACPP_TOOLS[@]}"; do [ -x "$LLAMACPP_BIN/$t" ] || missing=1; done
  if [ "$missing" = 1 ]; then
    llamacpp_fetch_source
    local src="$LLAMACPP_DIR/src/vendor/llama.cpp" build="$LLAMACPP_DIR/build" noamx gen=()
    noamx=$(llamacpp_no_amx_flags)
    command -v ninja >/dev/null && gen=(-G Ninja)
    [ -f "$build/CMakeCache.txt" ] && gen=()  # keep the generator of an earlier configure
    echo "llamacpp.sh: building llama.cpp $(llamacpp_source_commit "$LLAMACPP_DIR/src" | cut -c1-7) in $build" >&2
    local t0=$SECONDS
    # shellcheck disable=SC2086  # LLAMACPP_CMAKE_ARGS is a list of arguments
    cmake -S "$src" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
      -DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
      -DCMAKE_C_FLAGS="$noamx" -DCMAKE_CXX_FLAGS="$noamx" ${LLAMACPP_CMAKE_ARGS:-} \
      >"$LLAMACPP_DIR/configure.log" 2>&1 ||
      llamacpp_die "CMake could not configure llama.cpp; see $LLAMACPP_DIR/configure.log"
    nice -n "${LCQ_NICE:-19}" cmake --build "$build" -j "${LLAMACPP_JOBS:-2}" --target "${LLAMACPP_TOOLS[@]}" \
      >"$LLAMACPP_DIR/build.log" 2>&1 ||
      llamacpp_die "the llama.cpp build failed; see $LLAMACPP_DIR/build.log"
    echo "llamacpp.sh: built in $((SECONDS - t0)) s" >&2
  fi
  for t in "${LLAMACPP_TOOLS[@]}"; do
    [ -x "$LLAMACPP_BIN/$t" ] || llamacpp_die "$LLAMACPP_BIN/$t is missing after the build; see $LLAMACPP_DIR/build.log"
  done
  LLAMACPP_COMMIT=$(llamacpp_source_commit "$LLAMACPP_DIR/src")
  LLAMACPP_GGML_VERSION=$(llamacpp_ggml_version "$LLAMACPP_DIR/src")
  LLAMACPP_VERSION_LINE="llama.cpp ${LLAMACPP_COMMIT:0:7} (vendored in llama-cpp-python $LLAMACPP_PY_VERSION, ggml $LLAMACPP_GGML_VERSION)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced
  set -euo pipefail
  llamacpp_ensure
  echo "$LLAMACPP_VERSION_LINE"
  echo "commit $LLAMACPP_COMMIT"
  echo "bin $LLAMACPP_BIN"
fi
