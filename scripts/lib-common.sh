# shellcheck shell=bash disable=SC2034
# Shared by scripts/deps and scripts/services: where things live, messages, and the few
# process/port probes both need. Sourced, never run; the sourcing script sets PT_PROG and
# `set -euo pipefail`. Messages go to stderr: stdout is kept for what callers eval.

PT_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
PT_VAR=$PT_ROOT/var
# Seconds a start may take before we give up and show the log (a loaded 2-core CI box
# running valgrind next door is the case to size for).
PT_SERVICES_TIMEOUT=${PT_SERVICES_TIMEOUT:-120}

pt_log() { printf '%s: %s\n' "${PT_PROG:-patterntrack}" "$*" >&2; }
pt_die() { pt_log "error: $*"; exit 1; }

# pt_tail FILE [LINES]: the end of a log, framed, on stderr (for "why did it not start").
pt_tail() {
    local f=$1 n=${2:-40}
    if [ -r "$f" ]; then
        printf -- '----- last %s lines of %s -----\n' "$n" "$f" >&2
        tail -n "$n" -- "$f" >&2
        printf -- '----- end of %s -----\n' "$f" >&2
    else
        pt_log "(no log at $f)"
    fi
}

# pt_alive PID: true while PID is a live process. A zombie counts as gone: a child we
# started ourselves and that died is a zombie until this shell reaps it.
pt_alive() {
    local pid=$1 stat
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ] && [ "${stat:0:1}" != X ]
}

# pt_cmdline PID: the command line, NULs as spaces (empty if the process is gone).
pt_cmdline() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

# pt_wait_exit PID SECONDS: true once PID is gone, false if it outlives SECONDS.
pt_wait_exit() {
    local pid=$1 deadline=$((SECONDS + $2))
    while pt_alive "$pid"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# pt_port_busy PORT: true if something listens on TCP PORT (any local address).
pt_port_busy() {
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]
    else
        (exec 5<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# pt_port_pid PORT: the pid listening on PORT, or nothing if unknown (another user's or
# namespace's process, or no `ss`).
pt_port_pid() {
    command -v ss >/dev/null 2>&1 || return 0
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2
}

# pt_check_port NAME VALUE: dies unless VALUE is a TCP port number.
pt_check_port() {
    if ! [[ $2 =~ ^[0-9]+$ ]] || [ "$2" -lt 1 ] || [ "$2" -gt 65535 ]; then
        pt_die "$1=$2 is not a TCP port"
    fi
}

# pt_java_major: the major version of `java` on PATH (8 for "1.8.0_x"), or nothing.
pt_java_major() {
    local v
    command -v java >/dev/null 2>&1 || return 0
    v=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
    v=${v#1.}
    printf '%s\n' "${v%%[.+-]*}"
}
