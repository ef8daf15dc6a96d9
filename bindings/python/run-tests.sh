#!/usr/bin/env bash
# Installs the Python binding (editable) and its pinned test dependencies into
# a virtualenv beside it (.venv), then runs the tests with pytest.
# Usage: RATETRACK_LIBRARY=/path/to/libratetrack.so.0 ./run-tests.sh [pytest args...]
# Works from any directory; safe to run again (reuses .venv); exits non-zero on
# any failure (including "no tests collected").
# tests/test_redis.py starts its own redis-server (/usr/bin/redis-server, or
# $RATETRACK_REDIS_SERVER) on free loopback ports; without one it is skipped,
# unless $CI or RATETRACK_REQUIRE_REDIS=1 is set, where that is a failure.
set -euo pipefail

if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
  echo "run-tests.sh: RATETRACK_LIBRARY is not set; set it to the path of libratetrack.so.0" >&2
  exit 2
fi
if [[ ! -f "$RATETRACK_LIBRARY" ]]; then
  echo "run-tests.sh: RATETRACK_LIBRARY=$RATETRACK_LIBRARY is not a file" >&2
  exit 2
fi
# A relative path is relative to the caller's directory: make it absolute
# before changing directory (the file name itself is kept, symlink or not).
if [[ "$RATETRACK_LIBRARY" != /* ]]; then
  RATETRACK_LIBRARY="$(cd "$(dirname "$RATETRACK_LIBRARY")" && pwd)/$(basename "$RATETRACK_LIBRARY")"
fi
export RATETRACK_LIBRARY

cd "$(dirname "${BASH_SOURCE[0]}")"

PYTHON="${PYTHON:-python3}"
VENV=.venv
if [[ ! -x "$VENV/bin/python" ]]; then
  "$PYTHON" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
"$VENV/bin/python" -m pip install --quiet -r requirements-test.txt
"$VENV/bin/python" -m pip install --quiet --no-deps -e .

rc=0
"$VENV/bin/python" -m pytest "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
  echo "run-tests.sh: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit $rc
