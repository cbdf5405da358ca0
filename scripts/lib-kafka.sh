# shellcheck shell=bash
# Kafka half of scripts/services: one Apache Kafka 4.4 process in KRaft mode (broker and
# controller), run from the jars in var/kafka/libs (scripts/deps kafka) with the JDK on
# PATH. Sourced after lib-common.sh.
#
# Layout, under var/kafka:  libs/  server.properties (from etc/kafka/server.properties.in)
#   cluster.id  data/  log/server.log (log4j2, etc/kafka/log4j2.xml)  log/stdout.log
#   kafka.pid
#
# Topics are created by the broker's auto-creation (num.partitions=6): a metadata request
# naming a topic, which is what `kcat -L -t NAME` sends, creates it. A topic with another
# partition count needs the Admin API, which kcat lacks; `kafka_topic` then runs a small
# Java program against the same jars (a couple of seconds to compile, so only then).

KAFKA_HOME=$PT_VAR/kafka
KAFKA_LIBS=$KAFKA_HOME/libs
KAFKA_CONF=$KAFKA_HOME/server.properties
KAFKA_DATA=$KAFKA_HOME/data
KAFKA_LOGDIR=$KAFKA_HOME/log
KAFKA_PIDFILE=$KAFKA_HOME/kafka.pid
KAFKA_DEFAULT_PORT=59092
KAFKA_DEFAULT_CONTROLLER_PORT=59093
KAFKA_AUTO_PARTITIONS=6
KAFKA_TOPICS=(agent-manifest-injections agent-actions agent-routing-decisions)
KAFKA_JVM_OPTS=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true)
# Seconds a SIGTERM'd broker gets for its controlled shutdown before SIGKILL.
KAFKA_STOP_TIMEOUT=${PT_KAFKA_STOP_TIMEOUT:-60}

# kafka_is_ours PID: true if PID is a live kafka.Kafka started with our server.properties
# from var/kafka (its cwd). One whose var/ was deleted under it has a "(deleted)" cwd: it
# is not ours to adopt, and kafka_free_port stops it.
kafka_is_ours() {
    pt_alive "$1" || return 1
    case "$(pt_cmdline "$1")" in
        *" kafka.Kafka $KAFKA_CONF"*) ;;
        *) return 1 ;;
    esac
    [ "$(readlink "/proc/$1/cwd" 2>/dev/null)" = "$KAFKA_HOME" ]
}

# kafka_pid: the broker's pid if ours runs. The pid file is checked against the process (a
# stale file may name a recycled pid); if it is wrong or gone, a broker of this tree is
# looked for among all processes, so one whose pid file was lost is still found.
kafka_pid() {
    local pid f
    pid=$(cat "$KAFKA_PIDFILE" 2>/dev/null || true)
    if [ -n "$pid" ] && kafka_is_ours "$pid"; then
        printf '%s\n' "$pid"
        return 0
    fi
    while read -r f; do
        pid=${f#/proc/}
        pid=${pid%/cmdline}
        if kafka_is_ours "$pid"; then
            printf '%s\n' "$pid"
            return 0
        fi
    done < <(grep -lzF -- "$KAFKA_CONF" /proc/[0-9]*/cmdline 2>/dev/null || true)
    return 1
}

# kafka_ports: "PORT CONTROLLER_PORT" of the running broker (from the server.properties it
# was started with), else of the next start.
kafka_ports() {
    local l
    if kafka_pid >/dev/null &&
        l=$(sed -n 's|^listeners=PLAINTEXT://127.0.0.1:\([0-9]*\),CONTROLLER://127.0.0.1:\([0-9]*\)$|\1 \2|p' \
            "$KAFKA_CONF") && [ -n "$l" ]; then
        printf '%s\n' "$l"
    else
        printf '%s %s\n' "${PT_KAFKA_PORT:-$KAFKA_DEFAULT_PORT}" \
            "${PT_KAFKA_CONTROLLER_PORT:-$KAFKA_DEFAULT_CONTROLLER_PORT}"
    fi
}
kafka_port() { local p; p=$(kafka_ports); printf '%s\n' "${p%% *}"; }

kafka_ready() { kcat -b "127.0.0.1:$1" -L -m 3 >/dev/null 2>&1; }

# kafka_free_port PORT: returns if PORT is free; stops a broker of this tree whose var/ was
# deleted under it (e.g. by git clean); dies naming any other holder.
kafka_free_port() {
    local port=$1 pid
    pt_port_busy "$port" || return 0
    pid=$(pt_port_pid "$port")
    if [ -n "$pid" ] && [[ "$(pt_cmdline "$pid")" == *" kafka.Kafka $KAFKA_CONF"* ]]; then
        pt_log "kafka: stopping pid $pid, a broker of this tree whose files were deleted"
        kafka_terminate "$pid"
        return 0
    fi
    pt_die "kafka: port $port is in use${pid:+ by pid $pid ($(pt_cmdline "$pid"))}; set PT_KAFKA_PORT / PT_KAFKA_CONTROLLER_PORT"
}

# kafka_terminate PID: SIGTERM (controlled shutdown), SIGKILL after KAFKA_STOP_TIMEOUT.
kafka_terminate() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    if ! pt_wait_exit "$pid" "$KAFKA_STOP_TIMEOUT"; then
        pt_log "kafka: pid $pid still there after ${KAFKA_STOP_TIMEOUT}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        pt_wait_exit "$pid" 10 || pt_die "kafka: pid $pid survives SIGKILL"
    fi
}

kafka_write_conf() {
    local port=$1 cport=$2
    sed -e "s|@KAFKA_PORT@|$port|g" -e "s|@CONTROLLER_PORT@|$cport|g" \
        -e "s|@DATA_DIR@|$KAFKA_DATA|g" "$PT_ROOT/etc/kafka/server.properties.in" \
        >"$KAFKA_CONF.tmp"
    mv -- "$KAFKA_CONF.tmp" "$KAFKA_CONF"
}

# kafka_cluster_id: ours, made once: 16 random bytes as unpadded base64url (22 chars),
# the form `kafka-storage random-uuid` prints; like Kafka we avoid a leading '-'.
kafka_cluster_id() {
    local id
    if ! id=$(cat "$KAFKA_HOME/cluster.id" 2>/dev/null) || [ "${#id}" -ne 22 ]; then
        id=-
        while [ "${id:0:1}" = - ]; do
            id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        done
        printf '%s\n' "$id" >"$KAFKA_HOME/cluster.id"
    fi
    printf '%s\n' "$id"
}

# kafka_format: formats data/ once, as a single-voter dynamic quorum:
#   java -cp 'libs/*' kafka.tools.StorageTool format --standalone -t ID -c server.properties
# It runs on data.tmp (a copy of the config pointing there) and is renamed when done, so an
# interrupted format leaves nothing that looks formatted.
kafka_format() {
    local id tmpconf=$KAFKA_HOME/format.properties
    [ -f "$KAFKA_DATA/meta.properties" ] && [ -d "$KAFKA_DATA/__cluster_metadata-0" ] && return 0
    if [ -e "$KAFKA_DATA" ]; then
        pt_log "kafka: removing unformatted $KAFKA_DATA"
        rm -rf -- "$KAFKA_DATA"
    fi
    rm -rf -- "$KAFKA_DATA.tmp"
    id=$(kafka_cluster_id)
    sed "s|^log.dirs=.*|log.dirs=$KAFKA_DATA.tmp|" "$KAFKA_CONF" >"$tmpconf"
    pt_log "kafka: formatting $KAFKA_DATA (cluster id $id)"
    if ! java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$PT_ROOT/etc/kafka/log4j2.xml" \
        -Dkafka.logs.dir="$KAFKA_LOGDIR" kafka.tools.StorageTool format --standalone \
        -t "$id" -c "$tmpconf" >"$KAFKA_LOGDIR/format.log" 2>&1; then
        pt_tail "$KAFKA_LOGDIR/format.log"
        pt_die "kafka: formatting the storage failed"
    fi
    rm -f -- "$tmpconf"
    mv -- "$KAFKA_DATA.tmp" "$KAFKA_DATA"
}

# kafka_wait_ready PID PORT: until the broker answers a metadata request; dies with the log
# if PID exits or the timeout passes.
kafka_wait_ready() {
    local pid=$1 port=$2 deadline=$((SECONDS + PT_SERVICES_TIMEOUT))
    until kafka_ready "$port"; do
        if ! pt_alive "$pid"; then
            pt_tail "$KAFKA_LOGDIR/stdout.log" 20
            pt_tail "$KAFKA_LOGDIR/server.log"
            pt_die "kafka: the broker (pid $pid) exited during start-up"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            pt_tail "$KAFKA_LOGDIR/server.log"
            pt_die "kafka: no metadata from 127.0.0.1:$port after ${PT_SERVICES_TIMEOUT}s"
        fi
        sleep 0.25
    done
}

kafka_start() {
    local ports port cport pid major
    ports=$(kafka_ports)
    port=${ports% *} cport=${ports#* }
    pt_check_port PT_KAFKA_PORT "$port"
    pt_check_port PT_KAFKA_CONTROLLER_PORT "$cport"
    command -v kcat >/dev/null 2>&1 || pt_die "kafka: kcat not found; run scripts/deps"
    major=$(pt_java_major)
    if [ -z "$major" ] || [ "$major" -lt 17 ]; then
        pt_die "kafka: needs java >= 17 on PATH; run scripts/deps"
    fi
    "$PT_ROOT/scripts/deps" kafka
    mkdir -p "$KAFKA_LOGDIR"
    if pid=$(kafka_pid); then
        printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
        pt_log "kafka: already running (pid $pid, 127.0.0.1:$port)"
        if [ "$port" != "${PT_KAFKA_PORT:-$port}" ]; then
            pt_log "kafka: warning: PT_KAFKA_PORT=$PT_KAFKA_PORT but the broker runs on $port; 'restart kafka' to move it"
        fi
    else
        if [ -e "$KAFKA_PIDFILE" ]; then
            pt_log "kafka: removing stale pid file ($(cat "$KAFKA_PIDFILE" 2>/dev/null))"
            rm -f -- "$KAFKA_PIDFILE"
        fi
        kafka_free_port "$port"
        kafka_free_port "$cport"
        kafka_write_conf "$port" "$cport"
        kafka_format
        pt_log "kafka: starting on 127.0.0.1:$port (controller $cport, data $KAFKA_DATA)"
        # setsid: out of the caller's session, so ^C or a test runner killing its process
        # group does not take the broker along. No fd may stay open to the caller: fd 3 is
        # its stdout (see scripts/services), and `eval "$(scripts/services up)"` waits for
        # every holder of it.
        printf '=== %s: scripts/services starts the broker\n' "$(date -u +%FT%TZ)" \
            >>"$KAFKA_LOGDIR/stdout.log"
        # shellcheck disable=SC2086
        (cd "$KAFKA_HOME" && exec setsid java "${KAFKA_JVM_OPTS[@]}" ${PT_KAFKA_JVM_OPTS:-} \
            -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$PT_ROOT/etc/kafka/log4j2.xml" \
            -Dkafka.logs.dir="$KAFKA_LOGDIR" kafka.Kafka "$KAFKA_CONF") \
            </dev/null >>"$KAFKA_LOGDIR/stdout.log" 2>&1 3>&- &
        pid=$!
        printf '%s\n' "$pid" >"$KAFKA_PIDFILE"
    fi
    kafka_wait_ready "$pid" "$port"
    pt_log "kafka: ready on 127.0.0.1:$port"
}

kafka_stop() {
    local pid
    if ! pid=$(kafka_pid); then
        pt_log "kafka: not running"
        rm -f -- "$KAFKA_PIDFILE"
        return 0
    fi
    pt_log "kafka: stopping (pid $pid, SIGTERM)"
    kafka_terminate "$pid"
    rm -f -- "$KAFKA_PIDFILE"
    pt_log "kafka: stopped"
}

# kafka_kill: SIGKILL, for crash tests. The next start waits out the dead broker's session
# (broker.session.timeout.ms, 4 s here) before it registers again.
kafka_kill() {
    local pid
    if ! pid=$(kafka_pid); then
        pt_log "kafka: not running"
        return 0
    fi
    pt_log "kafka: SIGKILL pid $pid"
    kill -KILL "$pid"
    pt_wait_exit "$pid" 10 || pt_die "kafka: pid $pid survives SIGKILL"
    rm -f -- "$KAFKA_PIDFILE"
}

# kafka_partitions PORT TOPIC: how many partitions TOPIC has, all with a leader; 0 while it
# does not exist (asking creates it, see above) or a partition is leaderless.
kafka_partitions() {
    local json
    json=$(kcat -b "127.0.0.1:$1" -L -J -m 5 -t "$2" 2>/dev/null) || { echo 0; return; }
    if grep -q '"leader":-1' <<<"$json"; then
        echo 0
        return
    fi
    grep -o '"partition":' <<<"$json" | wc -l
}

# kafka_wait_topic PORT TOPIC [PARTITIONS]: until TOPIC is there with leaders (and, if
# given, PARTITIONS of them); prints the count.
kafka_wait_topic() {
    local port=$1 topic=$2 want=${3:-} n deadline=$((SECONDS + 30))
    while :; do
        n=$(kafka_partitions "$port" "$topic")
        if [ "$n" -gt 0 ] && { [ -z "$want" ] || [ "$n" -eq "$want" ]; }; then
            printf '%s\n' "$n"
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] ||
            pt_die "kafka: topic $topic not ready after 30s (partitions: $n${want:+, want $want})"
        sleep 0.2
    done
}

kafka_admin_topic() {
    local port=$1 topic=$2 parts=$3 src=$KAFKA_HOME/TopicAdmin.java
    cat >"$src" <<'EOF'
// Written by scripts/services: creates a topic with a given partition count, or grows an
// existing one to it. Usage: java -cp 'libs/*' TopicAdmin.java BOOTSTRAP TOPIC PARTITIONS
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.errors.TopicExistsException;

public class TopicAdmin {
    public static void main(String[] args) throws Exception {
        String topic = args[1];
        int want = Integer.parseInt(args[2]);
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(p)) {
            try {
                admin.createTopics(List.of(new NewTopic(topic, want, (short) 1))).all().get();
                System.err.println("created " + topic + " with " + want + " partitions");
                return;
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
            int have = admin.describeTopics(List.of(topic)).allTopicNames().get()
                .get(topic).partitions().size();
            if (have < want) {
                admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(want))).all().get();
                System.err.println("grew " + topic + " from " + have + " to " + want + " partitions");
            } else if (have > want) {
                System.err.println(topic + " has " + have + " partitions; Kafka cannot shrink a topic");
                System.exit(2);
            }
        }
    }
}
EOF
    java -cp "$KAFKA_LIBS/*" "$src" "127.0.0.1:$port" "$topic" "$parts" ||
        pt_die "kafka: could not make $topic have $parts partitions"
}

# kafka_topic_count PORT TOPIC: partitions of an existing TOPIC, else 0. Lists all topics
# rather than naming this one, so that asking does not auto-create it.
kafka_topic_count() {
    kcat -b "127.0.0.1:$1" -L -m 5 2>/dev/null |
        awk -v t="$2" '$1 == "topic" && $2 == "\"" t "\"" { n = $4 } END { print n + 0 }'
}

# kafka_topic TOPIC [PARTITIONS]: makes sure TOPIC exists: auto-created with 6 partitions
# unless PARTITIONS says otherwise; an existing topic is grown to PARTITIONS, never shrunk.
kafka_topic() {
    local topic=$1 parts=${2:-} port n
    port=$(kafka_port)
    if ! kafka_pid >/dev/null || ! kafka_ready "$port"; then
        pt_die "kafka: not running; scripts/services up"
    fi
    [[ $topic =~ ^[A-Za-z0-9._-]{1,249}$ ]] || pt_die "kafka: '$topic' is not a valid topic name"
    if [ -n "$parts" ]; then
        if ! [[ $parts =~ ^[0-9]+$ ]] || [ "$parts" -lt 1 ]; then
            pt_die "kafka: PARTITIONS must be a number >= 1"
        fi
        n=$(kafka_topic_count "$port" "$topic")
        if [ "$n" -ne "$parts" ] && { [ "$n" -gt 0 ] || [ "$parts" -ne "$KAFKA_AUTO_PARTITIONS" ]; }; then
            kafka_admin_topic "$port" "$topic" "$parts"
        fi
    fi
    n=$(kafka_wait_topic "$port" "$topic" "$parts")
    pt_log "kafka: topic $topic has $n partitions"
}

kafka_ensure_topics() {
    local t
    for t in "${KAFKA_TOPICS[@]}"; do
        kafka_topic "$t"
    done
}

# kafka_status: one line on stdout (fd 3); true if the broker answers metadata.
kafka_status() {
    local pid port topics
    if ! pid=$(kafka_pid); then
        printf 'kafka: down      (data %s)\n' "$KAFKA_DATA" >&3
        return 1
    fi
    port=$(kafka_port)
    if kafka_ready "$port"; then
        topics=$(kcat -b "127.0.0.1:$port" -L -m 3 2>/dev/null |
            sed -n 's/^  topic "\([^"]*\)" with \([0-9]*\) partitions.*/\1(\2)/p' | grep -v '^__' |
            tr '\n' ' ')
        printf 'kafka: up        pid %s  127.0.0.1:%s  log %s\n       topics: %s\n' \
            "$pid" "$port" "$KAFKA_LOGDIR/server.log" "${topics:-none}" >&3
        return 0
    fi
    printf 'kafka: running   pid %s  port %s  but not answering metadata  log %s\n' \
        "$pid" "$port" "$KAFKA_LOGDIR/server.log" >&3
    return 1
}
