# shellcheck shell=bash
# Running the engine in integration tests (sourced after lib.sh):
#   it_setup NAME             fresh database pt_it_NAME, unique topic prefix and group; sets
#                             DATABASE_URL, IT_PREFIX, IT_GROUP, IT_DIR (scratch dir), IT_CONFIG
#   engine_start [ENV=V...]   start build/patterntrack with IT_CONFIG in the background
#   engine_kill9              SIGKILL it and wait until it is gone
#   engine_stop               SIGTERM; wait (bounded) and return its exit status
#   wait_total N [SECS]       wait until sum(usage_count) == N
#   rss_watch                 sample every engine of this test (by its config path) every
#                             0.25 s until the test ends; rss_peak_mb prints the peak
#   secs_since T0             seconds (one decimal) since T0, an EPOCHREALTIME value
#   build_kind                "sanitized" when PT_BIN is the ASan build, else "plain"
#   need_plain_bin            use PT_PLAIN_BIN as PT_BIN (fails when the tree is sanitized and
#                             no plain build was named: make test names it)
PT_BIN=${PT_BIN:-$PT_IT_ROOT/build/patterntrack}
IT_PID=

it_setup() {
    local name=$1
    local base=${DATABASE_URL%/*}
    PGCLIENTENCODING=UTF8 psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 \
        -c "DROP DATABASE IF EXISTS pt_it_$name WITH (FORCE)" -c "CREATE DATABASE pt_it_$name" >/dev/null
    export DATABASE_URL="$base/pt_it_$name"
    IT_PREFIX="it-$name-$$-$RANDOM-"
    IT_GROUP="g-$IT_PREFIX"
    IT_DIR=$(mktemp -d "/tmp/pt-it-$name.XXXXXX")
    IT_CONFIG=$IT_DIR/config.lua
    cat >"$IT_CONFIG" <<LUA
return {
    topics = {
        ["${IT_PREFIX}agent-manifest-injections"] = "rules/agent-manifest-injections.lua",
        ["${IT_PREFIX}agent-actions"] = "rules/agent-actions.lua",
        ["${IT_PREFIX}agent-routing-decisions"] = "rules/agent-routing-decisions.lua",
    },
    kafka_group_id = "$IT_GROUP",
    -- static membership: a restarted engine takes its partitions back without waiting for the
    -- killed one's session to expire
    kafka_properties = { ["group.instance.id"] = "$IT_GROUP-1", ["session.timeout.ms"] = "6000" },
    batch_timeout_ms = 200,
    http_port = 0,
${IT_EXTRA_CONFIG:-}
}
LUA
    export IT_PREFIX IT_GROUP IT_DIR IT_CONFIG
    trap 'it_cleanup' EXIT
    (cd "$PT_IT_ROOT" && "$PT_BIN" migrate --config "$IT_CONFIG" >/dev/null)
    # The topics exist before the engine subscribes (as in production).
    local t
    for t in agent-manifest-injections agent-actions agent-routing-decisions; do
        "$PT_IT_ROOT/scripts/services" topic "$IT_PREFIX$t" >/dev/null
    done
}

it_cleanup() {
    if [ -n "${IT_RSS_PID:-}" ]; then
        kill "$IT_RSS_PID" 2>/dev/null || true
    fi
    if [ -n "$IT_PID" ] && kill -0 "$IT_PID" 2>/dev/null; then
        kill -9 "$IT_PID" 2>/dev/null || true
    fi
    if [ -n "${IT_KEEP:-}" ]; then
        echo "kept $IT_DIR" >&2
    else
        rm -rf "$IT_DIR"
    fi
}

need_plain_bin() {
    if [ -n "${PT_SANITIZED:-}" ] && [ -z "${PT_PLAIN_BIN:-}" ]; then
        echo "FAIL: this test measures the engine as shipped; configure the sanitized tree with" \
            "-DPT_PLAIN_BIN=/path/to/plain/patterntrack (make test does)" >&2
        exit 1
    fi
    PT_BIN=${PT_PLAIN_BIN:-$PT_BIN}
}

rss_watch() {
    (
        peak=0
        while :; do
            for p in $(pgrep -f -- "--config $IT_DIR/" || true); do
                r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null) || continue
                if [ "${r:-0}" -gt "$peak" ]; then
                    peak=$r
                    echo "$peak" >"$IT_DIR/rss.peak"
                fi
            done
            sleep 0.25
        done
    ) &
    IT_RSS_PID=$!
}

rss_peak_mb() {
    echo $(($(cat "$IT_DIR/rss.peak" 2>/dev/null || echo 0) / 1024))
}

secs_since() {
    local now=${EPOCHREALTIME/[.,]/} t0=${1/[.,]/}
    local ds=$(((10#$now - 10#$t0) / 100000))
    printf '%d.%d\n' $((ds / 10)) $((ds % 10))
}

build_kind() {
    if [ -n "${PT_SANITIZED:-}" ] && [ "$PT_BIN" != "${PT_PLAIN_BIN:-}" ]; then
        echo sanitized
    else
        echo plain
    fi
}

engine_start() {
    (cd "$PT_IT_ROOT" && exec env -u KAFKA_GROUP_ID -u HTTP_PORT "$@" "$PT_BIN" run --config "$IT_CONFIG") \
        >>"$IT_DIR/engine.log" 2>&1 &
    IT_PID=$!
}

_gone() { ! kill -0 "$IT_PID" 2>/dev/null; }

engine_kill9() {
    kill -9 "$IT_PID"
    wait "$IT_PID" 2>/dev/null || true
    IT_PID=
}

engine_stop() {
    kill -TERM "$IT_PID"
    local rc=0
    wait "$IT_PID" || rc=$?
    IT_PID=
    return $rc
}

_total_is() { [ "$(db_total)" = "$1" ]; }
wait_total() {
    wait_for "${2:-120}" _total_is "$1"
}

it_fail() {
    echo "FAIL: $*" >&2
    echo "--- engine log (tail) ---" >&2
    tail -n 40 "$IT_DIR/engine.log" >&2 || true
    exit 1
}
