#!/usr/bin/env bash
# Copies the library to two paths and runs tests/two_copies.c against both.
set -euo pipefail
lib=$1 prog=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/a" "$tmp/b"
cp "$lib" "$tmp/a/libratetrack.so.0"
cp "$lib" "$tmp/b/libratetrack.so.0"
"$prog" "$tmp/a/libratetrack.so.0" "$tmp/b/libratetrack.so.0"
