#!/usr/bin/env bash
# Builds the extension module ratetrack._fast (ext/_fast.c) for one Python,
# with the wheel's own CMakeLists.txt (RATETRACK_PYTHON_FAST_ONLY=ON: the
# module alone, from include/ratetrack.h; no C++), and makes that Python's
# site directory import it as ratetrack._fast while the rest of the package
# comes from src/ (a finder module, loaded by a .pth file). For
# run-tests.sh and run-bench.sh, which import the package from src/: nothing
# is written into the checkout but BUILD_DIR and SITE_DIR.
#
#   build-fast.sh PYTHON BUILD_DIR SITE_DIR
# Incremental when BUILD_DIR is kept. CFLAGS is honoured at the first
# configure (e.g. CFLAGS=-DRT_FAST_HOLD_GIL, the benchmark's comparison).
set -euo pipefail
python=$1 build=$2 site=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$build"
build=$(cd "$build" && pwd)
log="$build/build.log"
{ cmake -S "$here" -B "$build" -DRATETRACK_PYTHON_FAST_ONLY=ON -DCMAKE_BUILD_TYPE=Release \
    -DPython_EXECUTABLE="$python" && cmake --build "$build" -j2; } > "$log" 2>&1 ||
  { tail -30 "$log" >&2; echo "build-fast.sh: building ratetrack._fast for $python failed" >&2; exit 1; }

build_repr=$("$python" -c 'import sys; print(repr(sys.argv[1]))' "$build")
cat > "$site/ratetrack_fast_finder.py" <<PY
"""Written by bindings/python/build-fast.sh: ratetrack._fast from $build."""
import importlib.machinery
import importlib.util
import os
import sys


class _Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "ratetrack._fast":
            return None
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = os.path.join($build_repr, "_fast" + suffix)
            if os.path.exists(candidate):
                return importlib.util.spec_from_file_location(name, candidate)
        return None


sys.meta_path.insert(0, _Finder)
PY
echo "import ratetrack_fast_finder" > "$site/ratetrack-fast.pth"
