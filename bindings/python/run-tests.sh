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

. "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
require_library run-tests.sh

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
