# Sourced by the scripts that run tests or benchmarks against a built
# library (bindings/*/run-*.sh, tests/shm_languages_test.sh), before they
# change directory:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/../../scripts/library-env.sh"
#   require_library run-tests.sh
#
# require_library WHO: RATETRACK_LIBRARY must name an existing file (the
# libratetrack.so.0 to use); it is made absolute, relative to the caller's
# directory, and exported. Otherwise WHO says what is wrong and the script
# exits with 2.
# resolve_library: the same when RATETRACK_LIBRARY is set and exists;
# nothing otherwise (the loader's search path then finds the library).

resolve_library() {
  if [[ -n "${RATETRACK_LIBRARY:-}" && -e "$RATETRACK_LIBRARY" ]]; then
    RATETRACK_LIBRARY="$(cd "$(dirname "$RATETRACK_LIBRARY")" && pwd)/$(basename "$RATETRACK_LIBRARY")"
    export RATETRACK_LIBRARY
  fi
}

require_library() {
  local who=$1
  if [[ -z "${RATETRACK_LIBRARY:-}" ]]; then
    echo "$who: set RATETRACK_LIBRARY to the path of libratetrack.so.0" >&2
    exit 2
  fi
  if [[ ! -f "$RATETRACK_LIBRARY" ]]; then
    echo "$who: RATETRACK_LIBRARY=$RATETRACK_LIBRARY is not a file" >&2
    exit 2
  fi
  resolve_library
}
