#!/usr/bin/env bash
# `patterntrack test-rules` passes on the shipped fixtures and fails, with a diff, on a wrong
# expectation; `patterntrack check` validates config, rules and routes.
set -euo pipefail
bin=$1
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"
"$bin" test-rules >/tmp/pt-test-rules.$$ || { cat /tmp/pt-test-rules.$$; exit 1; }
tail -n 1 /tmp/pt-test-rules.$$
dir=$(mktemp -d)
trap 'rm -rf "$dir" /tmp/pt-test-rules.$$' EXIT
python3 - "$dir" <<'PY'
import json, sys
cases = json.load(open("rules/tests/agent-actions.json"))[:2]
cases[0]["expect"]["patterns"] = ["not-what-the-rule-says"]
json.dump(cases, open(sys.argv[1] + "/agent-actions.json", "w"))
PY
if "$bin" test-rules "$dir" >"$dir/out"; then
    echo "test-rules passed a wrong expectation" >&2
    exit 1
fi
grep -q '^FAIL agent-actions #1' "$dir/out" && grep -q 'want \["not-what-the-rule-says"\]' "$dir/out" ||
    { echo "no diff shown:" >&2; cat "$dir/out" >&2; exit 1; }
"$bin" check >/dev/null
echo 'return { nope = 1 }' >"$dir/bad.lua"
if "$bin" check --config "$dir/bad.lua" 2>"$dir/err"; then
    echo "check accepted an unknown option" >&2
    exit 1
fi
grep -q "unknown option 'nope'" "$dir/err"
echo "rules_cli: ok"
