#!/usr/bin/env bash
# The systemd service: deploy/systemd/patterntrack.service passes `systemd-analyze verify` (and a
# broken copy does not, so the check cannot pass vacuously), and the engine speaks the sd_notify
# protocol to a notify socket of our own (a python3 listener standing in for systemd): READY=1
# only after Kafka assigned partitions, WATCHDOG=1 every half of WATCHDOG_USEC from the event
# loop, RELOADING=1 then READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM and exit 0.
# With the consumer off it is ready once HTTP listens; with WATCHDOG_PID naming another process
# it sends no WATCHDOG=1. Without NOTIFY_SOCKET the engine is unchanged: every other integration
# test runs it so.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/engine.sh"
it_setup systemd
PT_BIN=$(realpath -- "$PT_BIN")
unit=$PT_IT_ROOT/deploy/systemd/patterntrack.service
[ -r "$unit" ] || it_fail "no $unit"
[ -r "$PT_IT_ROOT/deploy/systemd/patterntrack.env" ] || it_fail "no deploy/systemd/patterntrack.env"

# --- The unit file -------------------------------------------------------------------------
# What the engine's notify support relies on is in the unit as shipped.
for line in 'Type=notify' 'NotifyAccess=main' 'WatchdogSec=30s' 'Restart=on-failure' \
    'ExecStart=/usr/bin/patterntrack run --config /etc/patterntrack/patterntrack.lua' \
    'ExecReload=/bin/kill -HUP $MAINPID' 'EnvironmentFile=-/etc/default/patterntrack' \
    'User=patterntrack' 'MemoryDenyWriteExecute=yes' 'SystemCallFilter=@system-service'; do
    grep -qxF -- "$line" "$unit" || it_fail "the unit lacks the line: $line"
done
if grep -q '^ReadWritePaths=' "$unit"; then
    it_fail "the unit grants ReadWritePaths=, but the engine writes no file"
fi

# verify_clean FILE: systemd-analyze verify accepts FILE and says nothing about it. verify
# exits 0 on a bad value or an unknown key (it only logs "ignoring"), so its output counts too.
# It does not look up User= (the package creates "patterntrack"; it need not exist here).
verify_clean() {
    local out rc=0
    out=$(systemd-analyze verify "$1" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ] || [ -n "$out" ]; then
        printf 'systemd-analyze verify %s: exit %s\n%s\n' "$1" "$rc" "$out"
        return 1
    fi
}
# ExecStart's /usr/bin/patterntrack is not installed here and verify refuses a unit whose
# executable is missing: check a copy that runs this build instead (nothing else differs).
vdir=$IT_DIR/units
mkdir -p "$vdir"
sed -e "s|^ExecStart=/usr/bin/patterntrack |ExecStart=$PT_BIN |" "$unit" >"$vdir/patterntrack.service"
grep -qxF "ExecStart=$PT_BIN run --config /etc/patterntrack/patterntrack.lua" \
    "$vdir/patterntrack.service" || it_fail "could not point the unit's copy at $PT_BIN"
out=$(verify_clean "$vdir/patterntrack.service") || it_fail "the unit does not verify: $out"
# The check fails on broken units: a bad value (verify's exit status alone would miss it) ...
mkdir -p "$vdir/bad1" "$vdir/bad2"
sed -e 's/^Type=notify$/Type=notifyy/' "$vdir/patterntrack.service" >"$vdir/bad1/patterntrack.service"
if verify_clean "$vdir/bad1/patterntrack.service" >/dev/null; then
    it_fail "verify_clean accepted a unit with Type=notifyy"
fi
# ... and a missing executable (verify exits non-zero).
sed -e "s|^ExecStart=$PT_BIN |ExecStart=/nonexistent/patterntrack |" \
    "$vdir/patterntrack.service" >"$vdir/bad2/patterntrack.service"
if verify_clean "$vdir/bad2/patterntrack.service" >/dev/null; then
    it_fail "verify_clean accepted a unit whose ExecStart does not exist"
fi

# --- sd_notify -------------------------------------------------------------------------------
# The listener records each datagram as "seconds<TAB>assigned<TAB>message" (monotonic seconds;
# assigned = 1 when engine.log said "partitions assigned" before the datagram arrived; the
# message's newlines as "|").
sock=$IT_DIR/notify.sock
nlog=$IT_DIR/notify.log
python3 -c '
import socket, sys, time
path, out, elog = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
with open(out, "a", buffering=1) as f:
    while True:
        data = s.recv(65536).decode("utf-8", "replace")
        now = time.monotonic()
        try:
            with open(elog, "rb") as e:
                assigned = b"partitions assigned" in e.read()
        except FileNotFoundError:
            assigned = False
        f.write("%.3f\t%d\t%s\n" % (now, assigned, data.replace("\n", "|")))
' "$sock" "$nlog" "$IT_DIR/engine.log" &
listener=$!
trap 'kill "$listener" 2>/dev/null || true; it_cleanup' EXIT
wait_for 10 test -S "$sock" || it_fail "the notify listener did not bind $sock"
: >>"$nlog"

# The engine's pid is not known before it starts, so WATCHDOG_PID stays unset (with it set,
# sd_watchdog_enabled expects it to be the engine's pid).
unset WATCHDOG_PID
engine_start NOTIFY_SOCKET="$sock" WATCHDOG_USEC=2000000

# has N PATTERN [FROM]: at least N datagrams from line FROM on (default 1) match PATTERN.
has() {
    [ "$(tail -n "+${3:-1}" "$nlog" | grep -cE -- "$2")" -ge "$1" ]
}
wait_for 90 has 1 $'\tREADY=1' || it_fail "no READY=1 within 90 s: $(cat "$nlog")"
ready=$(grep -m1 -E $'\tREADY=1' "$nlog")
[ "$(cut -f2 <<<"$ready")" = 1 ] ||
    it_fail "READY=1 came before the engine logged that partitions were assigned: $ready"
grep -q 'partitions assigned' "$IT_DIR/engine.log" || it_fail "no assignment in the engine log"
grep -q 'STATUS=.*partitions assigned' <<<"$ready" || it_fail "READY=1 carries no STATUS=: $ready"
[ "$(grep -cE $'\tREADY=1' "$nlog")" = 1 ] || it_fail "more than one READY=1 at start"
ready_line=$(grep -nE $'\tREADY=1' "$nlog" | head -n1 | cut -d: -f1)

# Nothing maps memory writable and executable (the unit's MemoryDenyWriteExecute=yes).
if grep -qE '^[0-9a-f-]+ rwx' "/proc/$IT_PID/maps"; then
    it_fail "the engine has a writable and executable mapping: $(grep -E '^[0-9a-f-]+ rwx' "/proc/$IT_PID/maps")"
fi

# WATCHDOG=1 every half of WATCHDOG_USEC (1 s). It may also come before READY=1: the event loop
# pets from its first turn, and systemd accepts that (only the pings after READY=1 are checked).
wait_for 10 has 3 $'\tWATCHDOG=1' "$((ready_line + 1))" ||
    it_fail "fewer than 3 WATCHDOG=1 within 10 s of READY=1: $(cat "$nlog")"
# Events counted show in STATUS=.
"$PT_LOADGEN" --topic-prefix "$IT_PREFIX" --events 500 --rate 5000 --seed 7 \
    --truth "$IT_DIR/truth.tsv" --quiet || it_fail "the producer failed"
wait_for 30 has 1 'STATUS=.*; [1-9][0-9]* events in' "$((ready_line + 1))" ||
    it_fail "STATUS= never showed events counted: $(tail -n 3 "$nlog")"
wait_for 10 has 6 $'\tWATCHDOG=1' "$((ready_line + 1))" || it_fail "WATCHDOG=1 stopped"
# Intervals: on average about 1 s, and never near the 2 s timeout (the engine would be killed).
tail -n "+$((ready_line + 1))" "$nlog" | grep $'\tWATCHDOG=1' | cut -f1 |
    awk 'NR > 1 { d = $1 - prev; s += d; n++; if (d > max) max = d; if (min == "" || d < min) min = d }
         { prev = $1 }
         END {
             printf "watchdog: %d intervals, mean %.2f s, min %.2f s, max %.2f s\n", n, s / n, min, max
             exit !(n >= 5 && s / n > 0.8 && s / n < 1.3 && min > 0.5 && max < 1.8)
         }' >"$IT_DIR/wd.txt" || it_fail "WATCHDOG=1 pings are not about 1 s apart: $(cat "$IT_DIR/wd.txt")"
cat "$IT_DIR/wd.txt"

# SIGHUP: RELOADING=1, then READY=1 once the reload ended.
mark=$(($(wc -l <"$nlog") + 1))
kill -HUP "$IT_PID"
wait_for 20 has 1 $'\tREADY=1' "$mark" || it_fail "no READY=1 after SIGHUP: $(tail -n +"$mark" "$nlog")"
order=$(tail -n "+$mark" "$nlog" | grep -oE $'\t(RELOADING|READY)=1' | tr -d '\t' | tr '\n' ' ')
[ "$order" = "RELOADING=1 READY=1 " ] || it_fail "after SIGHUP: $order (want RELOADING=1 READY=1)"
grep -q 'MONOTONIC_USEC=' <<<"$(tail -n "+$mark" "$nlog" | grep 'RELOADING=1')" ||
    it_fail "RELOADING=1 without MONOTONIC_USEC="
grep -q 'reload: ok' "$IT_DIR/engine.log" || it_fail "the engine did not log the reload"

# SIGTERM: STOPPING=1 and a clean exit.
mark=$(($(wc -l <"$nlog") + 1))
rc=0
engine_stop || rc=$?
[ "$rc" = 0 ] || it_fail "SIGTERM exit status $rc"
wait_for 5 has 1 $'\tSTOPPING=1' "$mark" || it_fail "no STOPPING=1 after SIGTERM: $(tail -n +"$mark" "$nlog")"
if tail -n "+$mark" "$nlog" | grep -qE $'\t(READY|RELOADING)=1'; then
    it_fail "READY=1 or RELOADING=1 after SIGTERM"
fi
wd=$(grep -c $'\tWATCHDOG=1' "$nlog")

# Without Kafka (KAFKA_ENABLE_CONSUMER=false) the engine is ready once HTTP listens: /health
# answers at once when READY=1 has arrived. WATCHDOG_PID names another process here, so the
# watchdog is not for this engine (sd_watchdog_enabled) and it says so.
mark=$(($(wc -l <"$nlog") + 1))
port=$(free_port)
engine_start NOTIFY_SOCKET="$sock" WATCHDOG_USEC=2000000 WATCHDOG_PID=1 \
    KAFKA_ENABLE_CONSUMER=false HTTP_PORT="$port"
wait_for 60 has 1 $'\tREADY=1' "$mark" || it_fail "no READY=1 without Kafka: $(tail -n +"$mark" "$nlog")"
curl -sf "http://127.0.0.1:$port/health" >/dev/null || it_fail "READY=1 came before HTTP answered"
grep -q "STATUS=HTTP on 127.0.0.1:$port" <<<"$(tail -n "+$mark" "$nlog" | grep $'\tREADY=1')" ||
    it_fail "READY=1 without Kafka does not say where HTTP listens: $(tail -n +"$mark" "$nlog")"
grep -q 'notify: service manager at .*; no watchdog' "$IT_DIR/engine.log" ||
    it_fail "with WATCHDOG_PID of another process the engine did not turn the watchdog off"
# POST /admin/reload is a reload too: RELOADING=1, then READY=1, before its answer.
rmark=$(($(wc -l <"$nlog") + 1))
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/admin/reload")
[ "$code" = 200 ] || it_fail "POST /admin/reload answered $code"
wait_for 10 has 1 $'\tREADY=1' "$rmark" || it_fail "no READY=1 after POST /admin/reload"
order=$(tail -n "+$rmark" "$nlog" | grep -oE $'\t(RELOADING|READY)=1' | tr -d '\t' | tr '\n' ' ')
[ "$order" = "RELOADING=1 READY=1 " ] ||
    it_fail "after POST /admin/reload: '$order' (want RELOADING=1 READY=1)"
rc=0
engine_stop || rc=$?
[ "$rc" = 0 ] || it_fail "SIGTERM exit status $rc (without Kafka)"
wait_for 5 has 1 $'\tSTOPPING=1' "$mark" || it_fail "no STOPPING=1 without Kafka"
if tail -n "+$mark" "$nlog" | grep -q $'\tWATCHDOG=1'; then
    it_fail "WATCHDOG=1 sent although WATCHDOG_PID named another process"
fi
echo "it_systemd: ok (unit verifies, broken copies refused; READY=1 after the assignment," \
    "$wd WATCHDOG=1 at ~1 s, RELOADING=1/READY=1 on SIGHUP, STOPPING=1 and exit 0 on SIGTERM;" \
    "without Kafka READY=1 once HTTP listens, and around POST /admin/reload; $(build_kind) build)"
