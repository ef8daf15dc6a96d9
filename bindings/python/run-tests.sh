#!/usr/bin/env bash
# Runs the binding's tests with pytest against the library $RATETRACK_LIBRARY
# names, in a virtualenv beside this script per Python version (.venv-3.X)
# holding the pinned test dependencies (requirements-test.txt).
# Usage: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 [PYTHON=python3.X] ./run-tests.sh [pytest args...]
# The package is not built or installed (that would build the portable C++
# library: see tests/wheel_test.sh for the wheel): the venv imports it from
# src/ through a .pth file, which is all an editable install of a pure-Python
# package amounts to.
# The suite runs twice: with the extension module ratetrack._fast (built for
# the venv's Python into the venv by build-fast.sh: a few seconds, no C++)
# and RATETRACK_PYTHON_FAST=1, where tests/test_fast_path.py asserts that it
# is in use; then with RATETRACK_PYTHON_FAST=0, every call through ctypes.
# RATETRACK_PYTHON_FAST=1 or 0 in the environment runs that pass only (0
# needs no compiler, and the venv then has no ratetrack._fast at all).
# Works from any directory; safe to run again (reuses the venv); exits non-zero
# on any failure (including "no tests collected").
# tests/test_redis.py starts its own redis-server (/usr/bin/redis-server, or
# $RATETRACK_REDIS_SERVER) on free loopback ports; without one it is skipped,
# unless $CI or RATETRACK_REQUIRE_REDIS=1 is set, where that is a failure.
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh

cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON="${PYTHON:-python3}"
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=".venv-$version"
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
"$VENV/bin/python" -m pip install --quiet -r requirements-test.txt
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if compgen -G "$site/ratetrack-*.dist-info" >/dev/null; then  # an install would shadow src/
  "$VENV/bin/python" -m pip uninstall --quiet --yes ratetrack
fi
echo "$PWD/src" > "$site/ratetrack-src.pth"

passes=(1 0)
[[ -n "${RATETRACK_PYTHON_FAST:-}" ]] && passes=("$RATETRACK_PYTHON_FAST")
rm -f "$site/ratetrack-fast.pth"
if [[ " ${passes[*]} " == *" 1 "* ]]; then
  ./build-fast.sh "$PWD/$VENV/bin/python" "$VENV/ratetrack-fast" "$site" ||
    { echo "run-tests.sh: RATETRACK_PYTHON_FAST=0 runs the ctypes pass only, with no compiler" >&2; exit 1; }
fi

rc=0
for fast in "${passes[@]}"; do
  echo "run-tests.sh: RATETRACK_PYTHON_FAST=$fast ($([[ $fast == 0 ]] && echo "ctypes" || echo "ratetrack._fast"))"
  pass_rc=0
  RATETRACK_PYTHON_FAST=$fast "$VENV/bin/python" -m pytest "$@" || pass_rc=$?
  if [[ $pass_rc -eq 5 ]]; then
    echo "run-tests.sh: pytest collected no tests; that is a failure" >&2
    pass_rc=1
  fi
  [[ $pass_rc -eq 0 ]] || rc=$pass_rc
done
exit $rc
