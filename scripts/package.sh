#!/usr/bin/env bash
# Builds the release packages from the portable library (no dependency but
# glibc): a .deb that installs to /usr and a .tar.gz of the same tree.
#
#   scripts/package.sh [OUT_DIR]      default OUT_DIR: dist/
# Prints the paths of the two packages (what fails goes to stderr). The build
# tree is build-package/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out=${1:-dist}
build=${RATETRACK_PACKAGE_BUILD:-build-package}
scripts/install-deps.sh
scripts/fetch-deps.sh
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DRATETRACK_PORTABLE=ON -DRATETRACK_BUILD_TESTS=OFF -DRATETRACK_BUILD_BENCHMARKS=OFF \
  > "$build/configure.log" 2>&1 || { cat "$build/configure.log" >&2; exit 1; }
cmake --build "$build" > "$build/build.log" 2>&1 || { tail -40 "$build/build.log" >&2; exit 1; }
tests/check_portable.sh "$build/libratetrack.so.0" >&2
mkdir -p "$out"
(cd "$build" && cpack -G "DEB;TGZ" -B "$PWD/cpack" > cpack.log 2>&1) ||
  { tail -40 "$build/cpack.log" >&2; exit 1; }
for f in "$build"/cpack/*.deb "$build"/cpack/*.tar.gz; do
  cp "$f" "$out/"
  echo "$out/$(basename "$f")"
done
