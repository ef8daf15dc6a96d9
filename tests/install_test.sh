#!/usr/bin/env bash
# Installs the build into a fresh prefix (overriding the configured one) and
# builds a C example against it twice: with pkg-config alone, and with
# find_package(ratetrack) from a CMake project.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
pcdir=$(dirname "$(find "$prefix" -name ratetrack.pc)")
export PKG_CONFIG_PATH="$pcdir"
version=$(pkg-config --modversion ratetrack)
flags=$(pkg-config --cflags --libs ratetrack)
echo "pkg-config: ratetrack $version: $flags"
libdir=$(pkg-config --variable=libdir ratetrack)
# shellcheck disable=SC2086
cc -std=c99 -Wall -Werror -o "$tmp/seed" "$src/examples/seed_scenario.c" $(pkg-config --cflags --libs ratetrack) -lpthread
LD_LIBRARY_PATH="$libdir" "$tmp/seed" > "$tmp/seed.out"
grep -q "combined limit held" "$tmp/seed.out"
# The pkg-config version is the library's own.
cat > "$tmp/v.c" <<'C'
#include <stdio.h>
#include <string.h>
#include "ratetrack.h"
int main(int argc, char **argv) { (void)argc; return strcmp(argv[1], rt_version_string()) != 0; }
C
# shellcheck disable=SC2086
cc -o "$tmp/v" "$tmp/v.c" $(pkg-config --cflags --libs ratetrack)
LD_LIBRARY_PATH="$libdir" "$tmp/v" "$version"
# The SONAME symlink chain is installed.
test -L "$libdir/libratetrack.so" && test -L "$libdir/libratetrack.so.0"
# find_package(ratetrack) gives ratetrack::ratetrack.
mkdir "$tmp/consumer"
cat > "$tmp/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.16)
project(consumer C)
find_package(ratetrack 0.1 REQUIRED)
add_executable(seed seed_scenario.c)
find_package(Threads REQUIRED)
target_link_libraries(seed ratetrack::ratetrack Threads::Threads)
CM
cp "$src/examples/seed_scenario.c" "$tmp/consumer/"
cmake -S "$tmp/consumer" -B "$tmp/consumer/build" -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/c.log"
cmake --build "$tmp/consumer/build" > "$tmp/b.log"
"$tmp/consumer/build/seed" | grep -q "combined limit held"
echo "installed tree works with pkg-config and find_package"
