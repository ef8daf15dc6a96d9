#!/usr/bin/env bash
# The release packages as a user gets them (scripts/package.sh makes them):
#  - the .tar.gz unpacked into a fresh directory: the command and an example
#    run from there with no LD_LIBRARY_PATH ($ORIGIN RUNPATHs), the command
#    over rediss:// (tools/cli_rediss_test.sh), and a program builds against
#    it with pkg-config;
#  - the .deb installed with apt-get: the library needs only glibc, the
#    command (over rediss:// too) and the installed examples run with no
#    variable set, a program builds with pkg-config alone and with
#    find_package(ratetrack).
# The .deb stays installed (the newcomer tests use it); `dpkg -r libratetrack`
# removes it. Needs root.
#   tests/package_test.sh DIST_DIR
set -euo pipefail
dist=$(cd "${1:?usage: tests/package_test.sh DIST_DIR}" && pwd)
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deb=$(ls "$dist"/libratetrack_*.deb | head -1)
tgz=$(ls "$dist"/libratetrack-*.tar.gz | head -1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
clean() { env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$tmp" LANG=C.UTF-8 "$@"; }
cat > "$tmp/app.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <ratetrack.h>
int main(void) {
  uint64_t wait = 0;
  rt_tracker *t = rt_global_get("tier1");
  if (t == NULL || rt_try_acquire(t, "openai/gpt-4o-mini", 100, &wait) != RT_OK) return 1;
  printf("ok %s\n", rt_version_string());
  return 0;
}
C

# --- the .tar.gz, anywhere
mkdir "$tmp/anywhere"
tar -xzf "$tgz" -C "$tmp/anywhere" --strip-components=1
root="$tmp/anywhere"
clean "$root/bin/ratetrack" version | grep -q "^ratetrack 0\." || fail "tarball: bin/ratetrack does not run"
clean "$root/libexec/ratetrack/examples/seed_scenario" | grep -q "combined limit held" \
  || fail "tarball: the installed example does not run"
pc=$(dirname "$(find "$root" -name ratetrack.pc)")
clean PKG_CONFIG_PATH="$pc" sh -c "cc -o '$tmp/app-tgz' '$tmp/app.c' \$(pkg-config --cflags --libs ratetrack) -Wl,-rpath,\$(pkg-config --variable=libdir ratetrack)"
clean "$tmp/app-tgz" | grep -q "^ok 0\." || fail "tarball: a program built with pkg-config does not run"
# rediss://: the portable library loads OpenSSL 3 at run time
"$src/tools/cli_rediss_test.sh" "$root/bin/ratetrack" || fail "tarball: rediss://"
echo "tarball: the command, an example, rediss:// and a pkg-config build run from $root"

# --- the .deb, in /usr
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" > "$tmp/apt.log" 2>&1 \
  || { cat "$tmp/apt.log"; fail "apt-get install $deb"; }
lib=$(/sbin/ldconfig -p | sed -n 's/.*libratetrack\.so\.0 .*=> \(.*\)/\1/p' | head -1)
[ -n "$lib" ] || fail "the system loader does not know libratetrack.so.0 after the install"
"$src/tests/check_portable.sh" "$lib"
clean ratetrack version | grep -q "^ratetrack 0\." || fail "deb: ratetrack does not run"
"$src/tools/cli_rediss_test.sh" /usr/bin/ratetrack || fail "deb: rediss://"
clean /usr/libexec/ratetrack/examples/seed_scenario | grep -q "combined limit held" \
  || fail "deb: the installed example does not run"
clean sh -c "cc -o '$tmp/app-deb' '$tmp/app.c' \$(pkg-config --cflags --libs ratetrack)"
clean "$tmp/app-deb" | grep -q "^ok 0\." || fail "deb: a program built with pkg-config does not run"
mkdir "$tmp/consumer"
cp "$tmp/app.c" "$tmp/consumer/"
cat > "$tmp/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(ratetrack 0.1 REQUIRED)
add_executable(app app.c)
target_link_libraries(app ratetrack::ratetrack)
CM
clean cmake -S "$tmp/consumer" -B "$tmp/consumer/build" > "$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "deb: find_package"; }
clean cmake --build "$tmp/consumer/build" > "$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "deb: cmake build"; }
clean "$tmp/consumer/build/app" | grep -q "^ok 0\." || fail "deb: a find_package build does not run"
echo "deb: $lib needs only glibc; the command, an example, pkg-config and find_package work with no variable set"
