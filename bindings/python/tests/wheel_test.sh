#!/usr/bin/env bash
# The wheel as a user gets it. Builds one per Python (scripts/wheel.sh: pip
# wheel of bindings/python, which compiles the portable library and the
# extension module ratetrack._fast, then auditwheel; the library is compiled
# once, in one CMake build directory kept for all), then
#   - its tag is cpXY-cpXY-manylinux_2_X_x86_64, cpXY the Python's and X the
#     newest GLIBC_2.X that the library or the module really needs; the
#     library needs only glibc (tests/check_portable.sh), and so does the
#     module, which does not link the library and exports only its init
#     function; the library's licenses are beside it;
#   - the build wrote nothing into bindings/python (no build/, *.egg-info,
#     _skbuild);
#   - each installed into a fresh venv of its Python (the oldest and the
#     newest supported) and run with a clean environment (env -i: no
#     RATETRACK_LIBRARY, no LD_LIBRARY_PATH, a fresh HOME, outside the
#     checkout), a program acquires, settles, reads the stats, checks that
#     the library loaded is the wheel's own and that the hot calls go through
#     the wheel's ratetrack._fast (and refuse bad input as the ctypes path
#     does). Where a libratetrack.so.0 is installed system-wide
#     (it comes first, by design: that is checked too), the program runs in a
#     private mount namespace that hides it (as root, with unshare), else it
#     loads the wheel's copy by its path;
#   - an sdist carries the C++ project: its CMake project configures away
#     from the checkout.
#
#   bindings/python/tests/wheel_test.sh
# WHEEL_TEST_PYTHONS: the interpreters, oldest first (default: the newest
# 3.8.x and the newest 3.x under ${PYENV_ROOT:-~/.pyenv}/versions, else
# python3); a wheel is built with each. Needs what building the portable
# library needs (cmake, a C++17 compiler, nlohmann-json, pkg-config; Abseil
# and hiredis sources, fetched by scripts/fetch-deps.sh when missing) and
# PyPI (scikit-build-core, auditwheel).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/ratetrack-wheel-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "wheel_test: FAIL: $*" >&2; exit 1; }
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

if [[ -n "${WHEEL_TEST_PYTHONS:-}" ]]; then
  read -r -a pythons <<< "$WHEEL_TEST_PYTHONS"
else
  versions="${PYENV_ROOT:-$HOME/.pyenv}/versions"
  oldest=$(ls -d "$versions"/3.8.* 2>/dev/null | sort -V | tail -1 || true)
  newest=$(ls -d "$versions"/3.* 2>/dev/null | sort -V | tail -1 || true)
  if [[ -n "$oldest" && -n "$newest" ]]; then
    pythons=("$oldest/bin/python3" "$newest/bin/python3")
  else
    pythons=(python3)
  fi
fi

# --- build, once per Python (the C++ library once: one build directory)
state() { git -C "$root" status --porcelain --ignored --untracked-files=all -- bindings/python _skbuild \
            | grep -v -E '^!! bindings/python/(\.venv[^/]*|\.pytest_cache)/|__pycache__/' || true; }
before=$(state)
wheels=()
for py in "${pythons[@]}"; do
  start=$SECONDS
  cp=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  wheel=$(PYTHON="$py" RATETRACK_WHEEL_BUILD_DIR="$tmp/skbuild" "$root/scripts/wheel.sh" "$tmp/dist-$cp" | tail -1)
  echo "built $(basename "$wheel") with $("$py" -V) in $((SECONDS - start)) s"
  wheels+=("$wheel")
done
[[ "$(state)" == "$before" ]] || fail "building the wheels wrote into the checkout: $(diff <(echo "$before") <(state) || true)"

# --- each wheel's contents and tag
for i in "${!pythons[@]}"; do
  py=${pythons[$i]} wheel=${wheels[$i]}
  cp=$("$py" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
  suffix=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
  unpacked="$tmp/unpacked-$cp"
  mkdir "$unpacked"
  python3 -m zipfile -e "$wheel" "$unpacked"
  lib="$unpacked/ratetrack/_lib/libratetrack.so.0"
  [[ -f "$lib" ]] || fail "no ratetrack/_lib/libratetrack.so.0 in $(basename "$wheel")"
  "$root/tests/check_portable.sh" "$lib"
  for f in LICENSE.abseil COPYING.hiredis; do
    [[ -f "$unpacked/ratetrack/_lib/$f" ]] || fail "no ratetrack/_lib/$f beside the library"
  done
  compgen -G "$unpacked/ratetrack-*.dist-info/licenses/LICENSE" >/dev/null || fail "no .dist-info/licenses/LICENSE"
  fast="$unpacked/ratetrack/_fast$suffix"
  modules=$(cd "$unpacked/ratetrack" && ls _fast*.so 2>/dev/null | paste -sd ' ')
  [[ -f "$fast" && "$modules" == "_fast$suffix" ]] || fail "$(basename "$wheel"): want ratetrack/_fast$suffix, has '$modules'"
  needed=$(readelf -d "$fast" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | paste -sd ' ')
  [[ -z "$(echo "$needed" | tr ' ' '\n' | grep -vE '^(libc|libdl)\.so\.[0-9]+$' || true)" ]] \
    || fail "ratetrack/_fast$suffix needs more than glibc: $needed"
  exported=$(nm -D --defined-only "$fast" | awk '$2 != "A" {print $3}' | paste -sd ' ')
  [[ "$exported" == "PyInit__fast" ]] || fail "ratetrack/_fast$suffix exports '$exported', not only PyInit__fast"
  ! nm -D --undefined-only "$fast" | grep -q ' rt_' || fail "ratetrack/_fast$suffix links libratetrack's functions"
  glibc=$(objdump -T "$lib" "$fast" | grep -o 'GLIBC_2\.[0-9]*' | sort -t. -k2,2n | tail -1)
  want="$cp-$cp-manylinux_${glibc#GLIBC_}_$(uname -m)"
  want=${want//./_}
  tags=$(sed -n 's/^Tag: //p' "$unpacked/ratetrack-"*.dist-info/WHEEL | tr '\n' ' ')
  [[ "$tags" == "$want " ]] || fail "WHEEL says tags '$tags', the files need $glibc: want '$want'"
  [[ "$(basename "$wheel")" == "ratetrack-"*"-$want.whl" ]] || fail "file name $(basename "$wheel") is not tagged $want"
  echo "tag $want (newest glibc symbol version needed: $glibc); ratetrack/_fast$suffix needs only $needed"
done

# --- installed and used, with a clean environment
cat > "$tmp/use.py" <<'PY'
import os
import sys

import ratetrack
from ratetrack import _library

venv = sys.argv[1]
if not os.path.realpath(ratetrack.__file__).startswith(os.path.realpath(venv) + os.sep):
    sys.exit("ratetrack imported from %s, not from the venv" % ratetrack.__file__)
if sys.argv[2] == "by-path":  # a system library would come first: name the wheel's copy
    ratetrack.load(_library.BUNDLED)
tracker = ratetrack.global_tracker("tier1")
first = tracker.try_acquire("openai/gpt-4o-mini", 1200)
admitted = tracker.try_acquire_grant("openai/gpt-4o-mini", 1200)
assert first and admitted, (first, admitted)
tracker.settle(admitted.grant, actual_tokens=850)
window = tracker.stats()["models"]["openai/gpt-4o-mini"]["tokens_per_minute"]
assert window["current"] == 1200 + 850, window
where = _library.loaded_from()
if where != _library.BUNDLED or not os.path.realpath(where).startswith(os.path.realpath(venv) + os.sep):
    sys.exit("loaded %s, not the wheel's %s" % (where, _library.BUNDLED))
fast = _library.FAST_MODULE
if not _library.fast_path() or tracker._fast is None:
    sys.exit("the hot calls do not go through ratetrack._fast: %s" % _library.fast_path_reason())
if not os.path.realpath(fast.__file__).startswith(os.path.realpath(venv) + os.sep):
    sys.exit("ratetrack._fast imported from %s, not from the venv" % fast.__file__)
for bad, error in ((-1, ratetrack.InvalidArgument), (2**64, ratetrack.InvalidArgument), (1.0, TypeError)):
    try:
        tracker.try_acquire("openai/gpt-4o-mini", bad)
    except error:
        pass
    else:
        sys.exit("try_acquire(%r) did not raise %s" % (bad, error.__name__))
print("wheel ok: Python %s, libratetrack %s from %s, %s" % (
    sys.version.split()[0], ratetrack.version(), where, _library.fast_path_reason()))
PY
mkdir -p "$tmp/home" "$tmp/run"
clean=(env -i HOME="$tmp/home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 TMPDIR="$tmp")
hide=""      # the system's libratetrack.so.0 files, hidden from the program when set
run_clean() {  # run_clean CMD...: in $tmp/run, with the clean environment
  if [[ -n "$hide" ]]; then
    (cd "$tmp/run" && unshare -m --propagation private sh -c \
      'for f in '"$hide"'; do mount --bind /dev/null "$f" || exit 1; done; exec "$@"' sh "${clean[@]}" "$@")
  else
    (cd "$tmp/run" && "${clean[@]}" "$@")
  fi
}
how=default
if run_clean python3 -c 'import ctypes; ctypes.CDLL("libratetrack.so.0")' 2>/dev/null; then
  system_libs=$(/sbin/ldconfig -p | sed -n 's/^\s*libratetrack\.so\.0 .*=> //p' | xargs -r readlink -f | sort -u | paste -sd ' ')
  if [[ $(id -u) == 0 && -n "$system_libs" ]] && unshare -m --propagation private true 2>/dev/null; then
    echo "note: a libratetrack.so.0 is installed system-wide ($system_libs): it comes first; hidden for the program"
    hide=$system_libs
  else
    echo "note: a libratetrack.so.0 is installed system-wide: it comes first; the program loads the wheel's copy by its path"
    how=by-path
  fi
fi
for i in "${!pythons[@]}"; do
  py=${pythons[$i]} wheel=${wheels[$i]}
  venv="$tmp/venv-$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  "$py" -m venv "$venv"
  (cd "$tmp/run" && "${clean[@]}" "$venv/bin/python" -m pip install --quiet --no-index "$wheel") \
    || fail "pip install $(basename "$wheel") into a $("$py" -V) venv"
  run_clean "$venv/bin/python" "$tmp/use.py" "$venv" "$how" \
    || fail "the installed wheel does not work with $("$py" -V)"
  if [[ -n "$hide" || $how == by-path ]]; then
    (cd "$tmp/run" && "${clean[@]}" "$venv/bin/python" -c 'import ratetrack, ratetrack._library as l
ratetrack.load(); assert l.loaded_from() == "libratetrack.so.0", l.loaded_from()') \
      || fail "the system's libratetrack.so.0 is not loaded first"
  fi
done

# --- an sdist builds away from the checkout: it carries the C++ project
"${pythons[-1]}" -m venv "$tmp/sdist-venv"
"$tmp/sdist-venv/bin/python" -m pip install --quiet scikit-build-core==1.1.2
(cd "$here" && "$tmp/sdist-venv/bin/python" -c \
  'import sys, scikit_build_core.build as b; print(b.build_sdist(sys.argv[1]))' "$tmp/sdist") > "$tmp/sdist.log" 2>&1 \
  || { cat "$tmp/sdist.log"; fail "building the sdist"; }
[[ "$(state)" == "$before" ]] || fail "building the sdist wrote into the checkout"
mkdir "$tmp/sdist-src"
tar -xzf "$tmp/sdist"/ratetrack-*.tar.gz -C "$tmp/sdist-src"
cmake -S "$tmp/sdist-src"/ratetrack-* -B "$tmp/sdist-build" -DRATETRACK_PORTABLE=ON -DRATETRACK_BUILD_TESTS=OFF \
  -DRATETRACK_BUILD_BENCHMARKS=OFF -DRATETRACK_BUILD_EXAMPLES=OFF > "$tmp/sdist-cmake.log" 2>&1 \
  || { tail -30 "$tmp/sdist-cmake.log"; fail "the sdist's CMake project does not configure"; }
grep -q "building libratetrack from $tmp/sdist-src/ratetrack-[^/]*/libratetrack$" "$tmp/sdist-cmake.log" \
  || fail "the sdist's CMake project did not use its own copy of libratetrack"
echo "sdist: $(basename "$tmp/sdist"/ratetrack-*.tar.gz) configures on its own"
echo "wheel_test: ok (${#pythons[@]} Pythons) in $SECONDS s"
