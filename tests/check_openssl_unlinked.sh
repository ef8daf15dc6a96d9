#!/usr/bin/env bash
# rediss:// loads OpenSSL at run time (src/redis/openssl.cc, dlopen on the
# first TLS use): the library has no NEEDED entry for libssl or libcrypto,
# and calls none of their functions directly (every one through dlsym).
#   tests/check_openssl_unlinked.sh path/to/libratetrack.so.0
set -euo pipefail
lib=$1
linked=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | grep -E '^lib(ssl|crypto)[.0-9]*\.so' || true)
[ -z "$linked" ] || { echo "$lib links OpenSSL: $(echo $linked)"; exit 1; }
called=$(nm -D --undefined-only "$lib" | awk '{print $NF}' | sed 's/@.*//' |
  grep -E '^(SSL|TLS|DTLS|ERR|X509|EVP|OPENSSL|CRYPTO|BIO|PEM)_' || true)
[ -z "$called" ] || { echo "$lib calls OpenSSL directly: $(echo $called | head -c 300)"; exit 1; }
echo "no libssl or libcrypto in NEEDED, no OpenSSL symbol undefined: $(readelf -d "$lib" |
  sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')"
