#!/usr/bin/env bash
# Fetches the sources of Abseil and hiredis that the portable library
# (-DRATETRACK_PORTABLE=ON) compiles in: Debian 12's own source packages,
# with Debian's patches applied, so the portable library carries exactly the
# code of the libabsl-dev and libhiredis-dev it would otherwise link.
# Debian's static archives cannot be used: they are not position-independent.
#
#   scripts/fetch-deps.sh [DIR]     default DIR: $RATETRACK_DEPS_DIR, else
#                                   ~/.cache/ratetrack/deps
# Prints nothing but errors; afterwards DIR/abseil and DIR/hiredis exist.
# Needs a deb-src entry for bookworm: added (as root) when missing.
set -euo pipefail
dir=${1:-${RATETRACK_DEPS_DIR:-$HOME/.cache/ratetrack/deps}}
mkdir -p "$dir"
[ -f "$dir/abseil/CMakeLists.txt" ] && [ -f "$dir/hiredis/hiredis.c" ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
if ! command -v dpkg-source >/dev/null; then
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
if ! grep -rqs "^Types: deb-src\|^deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  $sudo tee /etc/apt/sources.list.d/ratetrack-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  $sudo apt-get update -qq
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get source -qq abseil hiredis >/dev/null 2>&1) || {
  echo "fetch-deps: 'apt-get source abseil hiredis' failed (is a bookworm deb-src entry set?)" >&2
  exit 1
}
rm -rf "$dir/abseil" "$dir/hiredis"
mv "$work"/abseil-*/ "$dir/abseil"
mv "$work"/hiredis-*/ "$dir/hiredis"
