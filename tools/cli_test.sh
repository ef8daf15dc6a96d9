#!/usr/bin/env bash
# The ratetrack command: shm list/remove, exit codes, usage errors.
set -euo pipefail
cli=$1 seed=$2
name="cli-test-$$"
trap 'rm -f /dev/shm/ratetrack.$name' EXIT
"$cli" --help | grep -q "shm list"
"$cli" version | grep -q "^ratetrack [0-9]"
set +e
"$cli" bogus 2>/dev/null; [ $? -eq 64 ] || { echo "bogus: want 64"; exit 1; }
"$cli" shm remove 2>/dev/null; [ $? -eq 64 ] || { echo "missing NAME: want 64"; exit 1; }
"$cli" shm remove "../x" 2>/dev/null; [ $? -eq 64 ] || { echo "bad NAME: want 64"; exit 1; }
"$cli" shm remove "$name" 2>/dev/null; [ $? -eq 64 ] || { echo "unknown NAME: want 64"; exit 1; }
set -e
RATETRACK_BACKEND="shm:$name" "$seed" > /dev/null
"$cli" shm list | grep -E "^$name +0600 .* ok$" > /dev/null || { "$cli" shm list; echo "list: $name missing"; exit 1; }
"$cli" shm list --json | grep -q "\"name\":\"$name\""
"$cli" shm remove "$name" | grep -q "removed $name"
! "$cli" shm list | grep -q "^$name " || { echo "still listed"; exit 1; }
echo "ratetrack command: ok"
