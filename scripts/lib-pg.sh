# shellcheck shell=bash
# PostgreSQL half of scripts/services: a private PostgreSQL 15 cluster (Debian's binaries,
# not Debian's cluster manager) with database `patterntrack`, superuser `postgres`, trust
# auth on the unix socket and on 127.0.0.1/::1 only. Sourced after lib-common.sh.
#
# Layout, under PG_HOME (normally var/pg):  data/  run/ (socket)  log/postgresql.log
#
# initdb and postgres refuse to run as root, so as root the server runs as the existing
# `postgres` system user, which must be able to reach PG_HOME. When the tree sits below a
# folder it cannot enter (a clone under /root, mode 700), or is so deep that the socket path
# would pass the 107-byte limit of a unix socket address, PG_HOME moves to
# /var/tmp/patterntrack-<hash of the tree's path>/pg and var/pg becomes a symlink to it.
# That is less invasive than opening up someone's home folders with chmod, and the hash
# keeps two clones apart. The only mode we ever change is o+x on our own var/.

PG_BIN=${PT_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_OS_USER=postgres
PG_DBNAME=patterntrack
PG_DEFAULT_PORT=55432

pg_as_owner() { [ "$(id -u)" -eq 0 ]; }

# pg_as CMD...: runs CMD as the server's user, from / (a cwd it may not be able to enter).
pg_as() {
    if pg_as_owner; then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

pg_private_home() {
    printf '/var/tmp/patterntrack-%s/pg\n' "$(printf '%s' "$PT_ROOT" | sha256sum | cut -c1-12)"
}

# pg_home: where data/, run/ and log/ are (or will be); no side effects.
pg_home() {
    if [ -L "$PT_VAR/pg" ] || [ -d "$PT_VAR/pg" ]; then
        readlink -m -- "$PT_VAR/pg"
        return
    fi
    local sock="$PT_VAR/pg/run/.s.PGSQL.65535"
    if [ "${#sock}" -gt 100 ]; then
        pg_private_home
    elif pg_as_owner && ! runuser -u "$PG_OS_USER" -- test -x "$PT_ROOT" 2>/dev/null; then
        pg_private_home
    else
        printf '%s\n' "$PT_VAR/pg"
    fi
}

PG_HOME=$(pg_home)
PG_DATA=$PG_HOME/data
PG_RUN=$PG_HOME/run
PG_LOG=$PG_HOME/log/postgresql.log

# pg_pid: the postmaster's pid if our cluster runs. The pid file alone is not trusted (a
# stale one may name a recycled pid): the process must also have our data dir as its cwd,
# which the postmaster chdirs to.
pg_pid() {
    local pid
    pid=$(head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null) || return 1
    pt_alive "$pid" || return 1
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -f "$PG_DATA")" ] || return 1
    printf '%s\n' "$pid"
}

# pg_port: the port of the running cluster (line 4 of postmaster.pid), else the one a start
# would use.
pg_port() {
    local p=""
    if pg_pid >/dev/null; then
        p=$(sed -n 4p "$PG_DATA/postmaster.pid" 2>/dev/null)
    fi
    printf '%s\n' "${p:-${PT_PG_PORT:-$PG_DEFAULT_PORT}}"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres -d postgres -t 2 >/dev/null 2>&1; }

pg_prepare_home() {
    mkdir -p "$PT_VAR"
    if [ ! -e "$PT_VAR/pg" ] && [ ! -L "$PT_VAR/pg" ] && [ "$PG_HOME" != "$PT_VAR/pg" ]; then
        # No var/pg: a fresh clone. Anything left at PG_HOME belongs to an earlier tree at
        # this path; reusing its database next to a new, empty Kafka would pair stored
        # offsets with topics that no longer have them. Start clean.
        if [ -e "$PG_HOME" ]; then
            pt_log "pg: clearing $PG_HOME, left by an earlier tree at this path"
            if [ -n "$(pg_leftovers)" ]; then
                pg_clear_stale "${PT_PG_PORT:-$PG_DEFAULT_PORT}"
            fi
            rm -rf -- "$PG_HOME"
        fi
        mkdir -p "$PG_HOME"
        ln -s "$PG_HOME" "$PT_VAR/pg"
        pt_log "pg: var/pg -> $PG_HOME (the postgres user cannot reach this tree, or its path is too long for a socket)"
    fi
    mkdir -p "$PG_HOME" "$PG_RUN" "$(dirname "$PG_LOG")"
    chmod 755 "$PG_HOME" "$PG_RUN" "$(dirname "$PG_LOG")"
    if pg_as_owner; then
        chown "$PG_OS_USER:" "$PG_HOME" "$PG_RUN" "$(dirname "$PG_LOG")"
        if [ "$PG_HOME" = "$PT_VAR/pg" ] && ! runuser -u "$PG_OS_USER" -- test -x "$PT_VAR"; then
            chmod o+x "$PT_VAR"
        fi
        runuser -u "$PG_OS_USER" -- test -w "$PG_HOME" ||
            pt_die "pg: user $PG_OS_USER cannot write $PG_HOME; remove var/pg and retry"
    fi
}

# pg_initdb: creates the cluster once. initdb works in data.tmp and is renamed when done,
# so an interrupted run leaves nothing that looks like a cluster.
pg_initdb() {
    [ -f "$PG_DATA/PG_VERSION" ] && return 0
    if [ -e "$PG_DATA" ]; then
        pt_log "pg: removing incomplete $PG_DATA (no PG_VERSION)"
        rm -rf -- "$PG_DATA"
    fi
    rm -rf -- "$PG_DATA.tmp"
    pt_log "pg: initdb $PG_DATA"
    if ! pg_as "$PG_BIN/initdb" -D "$PG_DATA.tmp" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 --no-instructions >"$PG_HOME/log/initdb.log" 2>&1; then
        pt_tail "$PG_HOME/log/initdb.log"
        pt_die "pg: initdb failed"
    fi
    cat >"$PG_DATA.tmp/pg_hba.conf" <<'EOF'
# Written by scripts/services: trust, and only on the socket and loopback.
# TYPE  DATABASE     USER  ADDRESS        METHOD
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
host    all          all   ::1/128        trust
local   replication  all                  trust
host    replication  all   127.0.0.1/32   trust
host    replication  all   ::1/128        trust
EOF
    printf "\n# scripts/services keeps its settings in this file, rewritten at each start.\ninclude 'patterntrack.conf'\n" \
        >>"$PG_DATA.tmp/postgresql.conf"
    if pg_as_owner; then
        chown "$PG_OS_USER:" "$PG_DATA.tmp/pg_hba.conf" "$PG_DATA.tmp/postgresql.conf"
    fi
    mv -- "$PG_DATA.tmp" "$PG_DATA"
}

# pg_write_conf PORT: the settings, rewritten at each start so PT_PG_PORT takes effect.
pg_write_conf() {
    cat >"$PG_DATA/patterntrack.conf" <<EOF
# Written by scripts/services at each start; edits are lost.
listen_addresses = '127.0.0.1'
port = $1
unix_socket_directories = '$PG_RUN'
max_connections = 200
shared_buffers = 256MB
# The engine's tests kill the server on purpose: keep every durability guarantee.
fsync = on
synchronous_commit = on
full_page_writes = on
# stderr goes to pg_ctl's -l file: one log to tail when something fails.
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_messages = warning
log_min_error_statement = error
lc_messages = 'C'
EOF
    if pg_as_owner; then
        chown "$PG_OS_USER:" "$PG_DATA/patterntrack.conf"
    fi
}

# pg_free_port PORT: returns if PORT is free; stops a postgres of ours that holds it
# without a valid postmaster.pid (e.g. the pid file was deleted); dies for anything else.
pg_free_port() {
    local port=$1 pid cwd
    pt_port_busy "$port" || return 0
    pid=$(pt_port_pid "$port")
    cwd=$(readlink "/proc/${pid:-0}/cwd" 2>/dev/null || true)
    if [ -n "$pid" ] && [ "${cwd% (deleted)}" = "$(readlink -m "$PG_DATA")" ]; then
        pt_log "pg: stopping pid $pid, an earlier server of this tree still holding port $port"
        kill -INT "$pid" 2>/dev/null || true
        pt_wait_exit "$pid" 30 || { kill -QUIT "$pid" 2>/dev/null || true; pt_wait_exit "$pid" 10; } ||
            pt_die "pg: pid $pid does not go away"
        return 0
    fi
    pt_die "pg: port $port is in use${pid:+ by pid $pid ($(pt_cmdline "$pid"))}; set PT_PG_PORT to another port"
}

# pg_leftovers: pids of processes working in our data dir (cwd), postmaster first if any.
pg_leftovers() {
    local data pattern
    data=$(readlink -f "$PG_DATA")
    pattern=$(printf '%s' "$data" | sed 's/[][*?\\]/\\&/g')
    find /proc/[0-9]*/cwd -maxdepth 0 -lname "$pattern" 2>/dev/null |
        cut -d/ -f3 | while read -r pid; do
            case "$(pt_cmdline "$pid")" in
                "$PG_BIN/postgres "*) echo "0 $pid" ;;
                *) echo "1 $pid" ;;
            esac
        done | sort -n | cut -d' ' -f2
}

# pg_clear_stale PORT: clears what would stop a start when pg_pid found no server of ours:
#  - a postmaster of ours whose postmaster.pid is gone or damaged (it would quit by itself
#    within a minute): stopped like `-m fast`;
#  - children of a crashed (kill -9) postmaster, which linger until they notice and hold its
#    shared memory meanwhile: given 10 s, then SIGKILL;
#  - lock files (postmaster.pid, the socket's .lock) naming a dead postmaster. Until its
#    parent reaps it, a killed process is a zombie, which PostgreSQL's own lock check takes
#    for a live postmaster; we wait a little for the reaper, then remove the files.
pg_clear_stale() {
    local port=$1 pids pid lock deadline
    mapfile -t pids < <(pg_leftovers)
    if [ "${#pids[@]}" -gt 0 ] && [[ "$(pt_cmdline "${pids[0]}")" == "$PG_BIN/postgres "* ]]; then
        pt_log "pg: stopping pid ${pids[0]}, a server of this tree without a valid postmaster.pid"
        kill -INT "${pids[0]}" 2>/dev/null || true
        pt_wait_exit "${pids[0]}" 30 || kill -QUIT "${pids[0]}" 2>/dev/null || true
        pt_wait_exit "${pids[0]}" 10 || kill -KILL "${pids[0]}" 2>/dev/null || true
        mapfile -t pids < <(pg_leftovers)
    fi
    if [ "${#pids[@]}" -gt 0 ]; then
        pt_log "pg: waiting for ${#pids[@]} leftover process(es) of a crashed server: ${pids[*]}"
        deadline=$((SECONDS + 10))
        while [ -n "$(pg_leftovers)" ] && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        mapfile -t pids < <(pg_leftovers)
        if [ "${#pids[@]}" -gt 0 ]; then
            pt_log "pg: SIGKILL ${pids[*]}"
            kill -KILL "${pids[@]}" 2>/dev/null || true
            for pid in "${pids[@]}"; do pt_wait_exit "$pid" 10 || true; done
        fi
    fi
    for lock in "$PG_DATA/postmaster.pid" "$PG_RUN/.s.PGSQL.$port.lock"; do
        pid=$(head -n1 "$lock" 2>/dev/null) || continue
        deadline=$((SECONDS + 5))
        while kill -0 "$pid" 2>/dev/null && ! pt_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.1
        done
        # Live and not ours (a recycled pid: pg_leftovers above would have seen ours), a
        # zombie, or gone: the file is stale. A process we cannot inspect: leave it to pg_ctl.
        if ! pt_alive "$pid" || [ -n "$(readlink "/proc/$pid/cwd" 2>/dev/null)" ]; then
            pt_log "pg: removing stale ${lock##*/} (pid $pid)"
            rm -f -- "$lock"
        fi
    done
}

# pg_wait_ready PORT: until the server accepts TCP connections or the timeout passes.
pg_wait_ready() {
    local port=$1 deadline=$((SECONDS + PT_SERVICES_TIMEOUT))
    until pg_ready "$port"; do
        if ! pg_pid >/dev/null; then
            pt_tail "$PG_LOG"
            pt_die "pg: the server is not running"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            pt_tail "$PG_LOG"
            pt_die "pg: not accepting connections on 127.0.0.1:$port after ${PT_SERVICES_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

pg_ensure_db() {
    local psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres)
    if [ "$("${psql[@]}" -tAc "select 1 from pg_database where datname = '$PG_DBNAME'")" != 1 ]; then
        "${psql[@]}" -c "create database $PG_DBNAME" >/dev/null
        pt_log "pg: created database $PG_DBNAME"
    fi
}

pg_start() {
    local port=${PT_PG_PORT:-$PG_DEFAULT_PORT} pid rport
    pt_check_port PT_PG_PORT "$port"
    [ -x "$PG_BIN/pg_ctl" ] || pt_die "pg: no $PG_BIN/pg_ctl; run scripts/deps (or set PT_PG_BIN)"
    pg_prepare_home
    pg_initdb
    if pid=$(pg_pid); then
        rport=$(pg_port)
        pt_log "pg: already running (pid $pid, 127.0.0.1:$rport)"
        if [ "$rport" != "$port" ]; then
            pt_log "pg: warning: PT_PG_PORT=$port but the server runs on $rport; 'restart pg' to move it"
        fi
        port=$rport
    else
        pg_clear_stale "$port"
        pg_free_port "$port"
        pg_write_conf "$port"
        pt_log "pg: starting on 127.0.0.1:$port (data $PG_DATA)"
        # fd 3 is the caller's stdout (see scripts/services): the server must not keep it.
        if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PT_SERVICES_TIMEOUT" -s \
            start 3>&-; then
            pt_tail "$PG_LOG"
            pt_die "pg: pg_ctl start failed"
        fi
    fi
    pg_wait_ready "$port"
    pg_ensure_db "$port"
    pt_log "pg: ready on 127.0.0.1:$port"
}

# pg_stop MODE: fast (sessions are ended, then a shutdown checkpoint) or immediate (no
# checkpoint: the next start runs crash recovery). A fast stop that hangs turns immediate.
pg_stop() {
    local mode=$1 pid
    if ! pid=$(pg_pid); then
        if [ -n "$(pg_leftovers)" ]; then
            pt_log "pg: no valid postmaster.pid, but processes of this tree run"
            pg_clear_stale "$(pg_port)"
            pt_log "pg: stopped"
        else
            pt_log "pg: not running"
        fi
        return 0
    fi
    pt_log "pg: stopping (pid $pid, -m $mode)"
    if ! pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w -t 60 -s stop 3>&-; then
        [ "$mode" = immediate ] && pt_die "pg: pg_ctl stop -m immediate failed"
        pt_log "pg: fast stop did not finish; stopping -m immediate"
        pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 -s stop 3>&- ||
            pt_die "pg: pg_ctl stop -m immediate failed"
    fi
    pt_log "pg: stopped"
}

# pg_status: one line on stdout (fd 3); true if the server accepts connections.
pg_status() {
    local pid port
    if ! pid=$(pg_pid); then
        pid=$(pg_leftovers | head -n1)
        if [ -n "$pid" ]; then
            printf 'pg:    broken    pid %s runs in %s without a valid postmaster.pid; use restart pg\n' \
                "$pid" "$PG_DATA" >&3
        else
            printf 'pg:    down      (data %s)\n' "$PG_DATA" >&3
        fi
        return 1
    fi
    port=$(pg_port)
    if pg_ready "$port"; then
        printf 'pg:    up        pid %s  postgresql://postgres@127.0.0.1:%s/%s  socket %s  log %s\n' \
            "$pid" "$port" "$PG_DBNAME" "$PG_RUN" "$PG_LOG" >&3
        return 0
    fi
    printf 'pg:    running   pid %s  port %s  but not accepting connections  log %s\n' \
        "$pid" "$port" "$PG_LOG" >&3
    return 1
}
