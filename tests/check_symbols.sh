#!/usr/bin/env bash
# Fails if libratetrack exports anything but the functions of the version
# script, or if a function of the version script is missing.
set -euo pipefail
lib=$1 map=$2
expected=$(grep -oE '^\s+rt_[a-z_]+;' "$map" | tr -d ' ;' | sort)
actual=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | sed 's/@.*//' | sort)
if [ "$expected" != "$actual" ]; then
  echo "exported symbols differ from $map:"
  diff <(echo "$expected") <(echo "$actual") || true
  exit 1
fi
soname=$(readelf -d "$lib" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "libratetrack.so.0" ] || { echo "SONAME is '$soname'"; exit 1; }
echo "$(echo "$actual" | wc -l) symbols, all rt_, SONAME $soname"
