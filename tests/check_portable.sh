#!/usr/bin/env bash
# The portable library (-DRATETRACK_PORTABLE=ON) needs nothing but glibc:
# its NEEDED entries are libc, libm, libpthread, libdl, librt and the dynamic
# loader; nothing of Abseil, hiredis or the C++ runtime is exported, and no
# symbol of theirs is needed from elsewhere (weak references aside).
#   tests/check_portable.sh path/to/libratetrack.so.0
set -euo pipefail
lib=$1
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort)
bad=$(echo "$needed" | grep -vE '^(libc|libm|libpthread|libdl|librt)\.so\.[0-9]+$|^ld-linux[-a-z0-9_]*\.so\.[0-9]+$' || true)
if [ -n "$bad" ]; then
  echo "the portable library needs more than glibc: $(echo $bad)"
  exit 1
fi
leaked=$(nm -D --defined-only "$lib" | awk '$2 != "A" {print $3}' | grep -v '^rt_' || true)
[ -z "$leaked" ] || { echo "exports beyond rt_: $(echo "$leaked" | head -5)"; exit 1; }
undefined=$(nm -D --undefined-only "$lib" | awk '$1 == "U" {print $2}' | grep -E '^_Z|absl|redis|sds' || true)
[ -z "$undefined" ] || { echo "needs C++ or library symbols from elsewhere: $(echo "$undefined" | head -5)"; exit 1; }
echo "needs only: $(echo $needed)"
