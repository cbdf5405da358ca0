#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang (ASan + UBSan, PT_FUZZ=ON) in
# build-fuzz/ and runs each for a bounded time over its committed seeds. Fails on any crash,
# leak, timeout or sanitizer report, and says which input did it; prints each target's execs.
#
#   tests/fuzz/run.sh                     every target, FUZZ_SECONDS (20) each
#   tests/fuzz/run.sh ingest http         some of them
#   FUZZ_SECONDS=600 tests/fuzz/run.sh    a longer session
#
# Inputs that found new coverage are kept in build-fuzz/corpus/<target> (the seeds in
# tests/fuzz/corpus/<target> are only read), so later runs start where earlier ones stopped;
# failing inputs are written to build-fuzz/crashes/<target>/. To replay one:
#   build-fuzz/tests/fuzz/fuzz_<target> build-fuzz/crashes/<target>/crash-...
# Worth committing: a failing input, once fixed, as tests/fuzz/corpus/<target>/regress-<what>.
set -euo pipefail
root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
build=${FUZZ_BUILD:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-20}
jobs=${JOBS:-2}
all=(text http config ingest)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

die() {
    echo "fuzz: $*" >&2
    exit 1
}
case $seconds in
    '' | *[!0-9]*) die "FUZZ_SECONDS must be a whole number of seconds, got '$seconds'" ;;
esac
command -v clang >/dev/null ||
    die "clang not found (scripts/deps installs clang and libclang-rt-14-dev)"

# Configured every time (quick): make would not know fuzz_all in a tree configured without it.
mkdir -p "$build"
if ! { CC=clang cmake -S "$root" -B "$build" -DPT_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
    cmake --build "$build" --target fuzz_all -j"$jobs"; } >"$build/fuzz-build.log" 2>&1; then
    cat "$build/fuzz-build.log" >&2
    die "build failed"
fi

# ASan/UBSan stop at the first report; LSan checks for leaks per input (libFuzzer) and at exit.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

failed=()
total=0
for t in "${targets[@]}"; do
    bin=$build/tests/fuzz/fuzz_$t
    seeds=$root/tests/fuzz/corpus/$t
    [ -x "$bin" ] || die "no target '$t' (targets: ${all[*]})"
    [ -d "$seeds" ] || die "no seeds in $seeds"
    mkdir -p "$build/corpus/$t" "$build/crashes/$t"
    log=$build/fuzz-$t.log
    dict=()
    [ ! -f "$root/tests/fuzz/$t.dict" ] || dict=(-dict="$root/tests/fuzz/$t.dict")
    rc=0
    # -timeout: one input may take at most 10 s; -rss_limit_mb bounds memory. Both fail the run.
    (cd "$build" && "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/crashes/$t/" "${dict[@]}" \
        "$build/corpus/$t" "$seeds") >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    corpus=$(find "$build/corpus/$t" -type f | wc -l)
    # A report that did not stop the run still fails it.
    reports='ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|fuzz check failed'
    if [ "$rc" -ne 0 ] || [ -z "$execs" ] || grep -qE "$reports" "$log"; then
        failed+=("$t")
        echo "fuzz_$t: FAILED (exit $rc) after ${execs:-?} execs; log $log" >&2
        grep -E "$reports|ERROR:|SUMMARY:|Test unit written to" "$log" | head -20 >&2 || true
        continue
    fi
    total=$((total + execs))
    printf 'fuzz_%-7s %9d execs in %ss (%s/s), corpus %d inputs, no crash, leak or report\n' \
        "$t" "$execs" "$seconds" "$rate" "$corpus"
done
if [ ${#failed[@]} -gt 0 ]; then
    die "${#failed[@]} target(s) failed: ${failed[*]}"
fi
echo "fuzz: ${#targets[@]} targets, $total execs, all clean"
