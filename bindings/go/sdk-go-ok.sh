#!/usr/bin/env bash
# Whether the go on PATH is new enough for the OpenAI and Anthropic SDKs
# (the go line of sdktest/go.mod, the SDKs' own: newer than the binding's):
# exits 0 if so, else 1 after printing which go it is and which it needs.
# Used by run-tests.sh (the SDK module's tests) and scripts/test.sh (the
# go-openai newcomer), so that both skip on the same rule.
set -euo pipefail
need=$(sed -n 's/^go //p' "$(dirname "${BASH_SOURCE[0]}")/sdktest/go.mod")
have=$(go env GOVERSION 2> /dev/null || echo go0)
have=${have#go}
[[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" == "$need" ]] && exit 0
echo "the OpenAI and Anthropic SDKs need Go $need; this is Go $have"
exit 1
