# shellcheck shell=bash
# Running the engine in integration tests (sourced after lib.sh):
#   it_setup NAME             fresh database pt_it_NAME, unique topic prefix and group; sets
#                             DATABASE_URL, IT_PREFIX, IT_GROUP, IT_DIR (scratch dir), IT_CONFIG
#   engine_start [ENV=V...]   start build/patterntrack with IT_CONFIG in the background
#   engine_kill9              SIGKILL it and wait until it is gone
#   engine_stop               SIGTERM; wait (bounded) and return its exit status
#   wait_total N [SECS]       wait until sum(usage_count) == N
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
    if [ -n "$IT_PID" ] && kill -0 "$IT_PID" 2>/dev/null; then
        kill -9 "$IT_PID" 2>/dev/null || true
    fi
    if [ -n "${IT_KEEP:-}" ]; then
        echo "kept $IT_DIR" >&2
    else
        rm -rf "$IT_DIR"
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
