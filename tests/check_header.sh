#!/usr/bin/env bash
# The public header compiles alone as strict C99 and C++11.
set -euo pipefail
include=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '#include "ratetrack.h"\nint main(void) { return rt_version_number() == RT_VERSION_NUMBER ? 0 : 1; }\n' > "$tmp/h.c"
cp "$tmp/h.c" "$tmp/h.cc"
${CC:-cc} -std=c99 -Wall -Wextra -Werror -pedantic -I"$include" -c "$tmp/h.c" -o "$tmp/c.o"
${CXX:-c++} -std=c++11 -Wall -Wextra -Werror -pedantic -I"$include" -c "$tmp/h.cc" -o "$tmp/cc.o"
echo "header compiles as C99 and C++11"
