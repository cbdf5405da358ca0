#!/usr/bin/env bash
# Checks deploy/prometheus/alerts.yml: promtool check rules (syntax, PromQL, templates),
# promtool test rules with tests/integration/alerts_test.yml (each alert fires on a synthetic
# series, only after its `for`), every alert has a unit test, and every metric the rules
# read is one the engine exports (a renamed metric would silence an alert for ever).
# promtool comes from the Debian package prometheus (scripts/deps installs it); without it
# the test fails. Needs no service. Prints `N passed, M failed`; exit 1 on any failure.
set -uo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
rules=$root/deploy/prometheus/alerts.yml
unit=$root/tests/integration/alerts_test.yml
passed=0
failed=0

ok() { passed=$((passed + 1)); }
fail() {
    failed=$((failed + 1))
    printf 'FAIL: %s\n' "$1"
    if [ -n "${2:-}" ]; then
        printf '%s\n' "$2" | sed 's/^/      /'
    fi
}
run() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok
    else
        fail "$name" "$out"
    fi
}

if ! command -v promtool >/dev/null 2>&1; then
    fail "promtool is installed (Debian package prometheus; run scripts/deps)"
    printf '%d passed, %d failed\n' "$passed" "$failed"
    exit 1
fi

run "promtool check rules deploy/prometheus/alerts.yml" promtool check rules "$rules"
run "promtool test rules tests/integration/alerts_test.yml" promtool test rules "$unit"

# Every alert of the rules has a unit test, and the seed's three plus ours are there.
mapfile -t alerts < <(sed -n 's/^[[:space:]]*-[[:space:]]*alert:[[:space:]]*\([A-Za-z0-9_]*\).*/\1/p' "$rules")
for a in PatternUsageTrackingDown HighUsageTrackingErrorRate UsageTrackingConsumerLag \
    UsageTrackingDeadLetters; do
    if printf '%s\n' "${alerts[@]}" | grep -qx "$a"; then ok; else fail "alert $a is defined"; fi
done
for a in "${alerts[@]}"; do
    if grep -Eq "alertname:[[:space:]]*$a[[:space:]]*$" "$unit"; then
        ok
    else
        fail "alert $a has a test in alerts_test.yml"
    fi
done

# Every metric the expressions read is exported by the engine (src/*.c), `up` aside.
mapfile -t metrics < <(grep -E '^[[:space:]]*expr:|^[[:space:]]{10}[a-z]' "$rules" |
    grep -oE '\b(pattern|usage_tracking|patterntrack)_[a-z_]+' | sort -u)
if [ "${#metrics[@]}" -eq 0 ]; then
    fail "found the metrics the rules read"
fi
for m in "${metrics[@]}"; do
    if grep -q "\"$m\"" "$root"/src/*.c; then
        ok
    else
        fail "metric $m (read by an alert) is exported by src/*.c"
    fi
done

printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
