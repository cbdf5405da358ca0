#!/usr/bin/env bash
# HTTP API benchmark: wrk on every analytics endpoint against a database the size of
# 100,000 patterns, 1,000 agents and 10 million usage events, while the engine ingests from
# Kafka at a target rate. Measures, asserts nothing.
#
#   bench/api.sh [RUNS] [INGEST_RATE] [DURATION_S]   (defaults 3, 50000, 20)
#
# INGEST_RATE 0 measures the API alone. PT_BENCH_REUSE=1 reuses the database of an earlier run.
# REQ_RATE=N asks each endpoint for about N requests/s (4 connections, each waiting its share of
# a second after every answer) instead of as many as wrk can send: latency at a given load, not
# at saturation (0, the default: flat out on 16 connections).
#
# The history is synthesized with SQL (ingesting 10 M events first would take longer than the
# benchmark): exact-looking rows of the same shape and size the engine itself writes: 100,000
# registered patterns, ~2 M (pattern, agent) pairs and ~3 M hourly rows over 30 days, summing to
# 10 M uses. Live ingest runs on top through Kafka (pt-loadgen at INGEST_RATE events/s, as fast
# as this machine allows) for the whole measurement.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
. "$ROOT/tests/integration/lib.sh"
. "$ROOT/bench/lib.sh"
RUNS=${1:-3}
RATE=${2:-50000}
DUR=${3:-20}
BIN=${PT_BIN:-$ROOT/build/patterntrack}
base=${DATABASE_URL%/*}
# PT_BENCH_REUSE=1 keeps the database of an earlier run (seeded, plus what its live ingest added)
reuse=0
if [ "${PT_BENCH_REUSE:-0}" = 1 ] &&
    psql "$base/pt_bench_api" -XtAc "SELECT 1 FROM pattern_lineage_nodes LIMIT 1" 2>/dev/null | grep -q 1; then
    reuse=1
else
    psql "$DATABASE_URL" -Xq -c "DROP DATABASE IF EXISTS pt_bench_api WITH (FORCE)" -c "CREATE DATABASE pt_bench_api" >/dev/null
fi
export DATABASE_URL="$base/pt_bench_api"
dir=$(mktemp -d /tmp/pt-bench-api.XXXXXX)
prefix="bapi-$$-"
bench_topics "$prefix"
port=$(free_port)
bench_config "$dir/config.lua" "$prefix" "    http_port = $port, log_level = \"warn\","
(cd "$ROOT" && "$BIN" migrate --config "$dir/config.lua" >/dev/null)
if [ "$reuse" = 0 ]; then
echo "seeding: 100k patterns, 1k agents, 10M uses ..." >&2
t0=$(date +%s)
pt_psql <<'SQL'
INSERT INTO pattern_lineage_nodes (pattern_id, pattern_name, pattern_type, created_at, registered)
SELECT 'pat-' || lpad(g::text, 6, '0'), 'Pattern ' || g, (ARRAY['code','knowledge','workflow','doc'])[1 + g % 4],
       now() - interval '200 days', true
  FROM generate_series(1, 100000) g;
-- (pattern, agent): pattern g is used by 1 + 400000 / (g + 1000) agents (Zipf-like: 400 for
-- the most used, 4 for the least; ~1.9 M pairs), and has 1450000 / (g + 100) uses in all (~10 M
-- over all patterns), spread evenly over its agents. As the flush writes them: a key each in
-- pattern_agents, and partner lists both ways (folded).
CREATE TEMP TABLE seed_pa AS
SELECT DISTINCT ON (1, 2) 'pat-' || lpad(g::text, 6, '0') AS pattern_id,
       'agent-' || ((g * 7 + a * 13) % 1000) AS agent_name,
       greatest(1, (1450000 / (g + 100)) / (1 + 400000 / (g + 1000)))::bigint AS c,
       (extract(epoch FROM now() - interval '30 days') * 1000000)::bigint AS f,
       (extract(epoch FROM now() - (a || ' minutes')::interval) * 1000000)::bigint AS l
  FROM generate_series(1, 100000) g, LATERAL generate_series(1, 1 + (400000 / (g + 1000))) a
 ORDER BY 1, 2, 5 DESC;
INSERT INTO pattern_agents SELECT pattern_id, agent_name FROM seed_pa ORDER BY 1, 2;
INSERT INTO pattern_lists (pattern_id, n_agents, agents, n_partners, n_low, partners)
SELECT pattern_id, count(*),
       pt_list_encode(array_agg(agent_name ORDER BY agent_name COLLATE "C"),
                      array_agg(c ORDER BY agent_name COLLATE "C"),
                      array_agg(f ORDER BY agent_name COLLATE "C"),
                      array_agg(l ORDER BY agent_name COLLATE "C")), 0, 0, NULL
  FROM seed_pa GROUP BY pattern_id;
INSERT INTO agent_lists (agent_name, n_patterns, patterns)
SELECT agent_name, count(*),
       pt_list_encode(array_agg(pattern_id ORDER BY pattern_id COLLATE "C"),
                      array_agg(c ORDER BY pattern_id COLLATE "C"),
                      array_agg(f ORDER BY pattern_id COLLATE "C"),
                      array_agg(l ORDER BY pattern_id COLLATE "C"))
  FROM seed_pa GROUP BY agent_name;
UPDATE pattern_lineage_nodes n SET usage_count = s.c, first_used_at = pt_ts(s.f), last_used_at = pt_ts(s.l)
  FROM (SELECT pattern_id, sum(c) c, min(f) f, max(l) l FROM seed_pa GROUP BY 1) s
 WHERE n.pattern_id = s.pattern_id;
-- hourly: each pattern's uses over up to 30 random hours of the last 30 days
INSERT INTO pattern_usage_hourly (pattern_id, hour, usage_count)
SELECT n.pattern_id, date_trunc('hour', now()) - ((h * 37 + substr(n.pattern_id, 5)::int) % 720) * interval '1 hour',
       greatest(1, n.usage_count / 30)
  FROM pattern_lineage_nodes n, generate_series(1, 30) h
ON CONFLICT DO NOTHING;
-- co-occurrence: pattern g with its next 1 + 200000 / (g + 1000) neighbours, as the partner
-- lists the folds keep (src/cooc.h), both sides of each pair, and their top
CREATE TEMP TABLE seed_pairs AS
SELECT 'pat-' || lpad(g::text, 6, '0') AS a, 'pat-' || lpad((g + k)::text, 6, '0') AS b,
       (1 + 100000 / (g + k))::bigint AS c,
       (extract(epoch FROM now() - (k || ' minutes')::interval) * 1000000)::bigint AS l
  FROM generate_series(1, 99000) g, LATERAL generate_series(1, 1 + (200000 / (g + 1000))) k;
INSERT INTO pattern_lists AS m (pattern_id, n_agents, agents, n_partners, n_low, partners)
SELECT p, 0, NULL, count(*), count(*) FILTER (WHERE o COLLATE "C" < p COLLATE "C"),
       pt_list_encode(array_agg(o ORDER BY o COLLATE "C"), array_agg(c ORDER BY o COLLATE "C"),
                      NULL, array_agg(l ORDER BY o COLLATE "C"))
  FROM (SELECT a AS p, b AS o, c, l FROM seed_pairs UNION ALL SELECT b, a, c, l FROM seed_pairs) s
 GROUP BY p
ON CONFLICT (pattern_id) DO UPDATE SET n_partners = EXCLUDED.n_partners, n_low = EXCLUDED.n_low,
    partners = EXCLUDED.partners;
SELECT pt_rebuild_cooccurrence_top();
UPDATE usage_topic_stats SET events = events; -- (no rows yet; the engine adds them)
INSERT INTO usage_topic_stats (topic, events, events_with_patterns) VALUES ('seed', 2500000, 2500000);
-- the per-agent and per-hour totals the flush would have kept
INSERT INTO agent_usage_totals (agent_name, usage_count, distinct_patterns, first_used_at, last_used_at)
SELECT agent_name, sum(c), count(*), pt_ts(min(f)), pt_ts(max(l)) FROM seed_pa GROUP BY 1;
INSERT INTO agent_type_usage
SELECT s.agent_name, coalesce(n.pattern_type, 'unknown'), sum(s.c), count(*), pt_ts(min(s.f)),
       pt_ts(max(s.l))
  FROM seed_pa s JOIN pattern_lineage_nodes n USING (pattern_id) GROUP BY 1, 2;
INSERT INTO usage_hourly_totals SELECT hour, sum(usage_count) FROM pattern_usage_hourly GROUP BY 1;
ANALYZE;
SQL
echo "seeded in $(( $(date +%s) - t0 )) s" >&2
fi
echo "database: $(pt_psql -tAc 'SELECT sum(usage_count) FROM pattern_lineage_nodes') uses, $(pt_psql -tAc 'SELECT count(*) FROM pattern_agents') pairs, $(pt_psql -tAc 'SELECT count(*) FROM pattern_usage_hourly') hours" >&2

# name, path (a %d in it means random pattern/agent number), upper bound of that number
ENDPOINTS=${ENDPOINTS:-"summary|/api/patterns/usage/summary|0
top|/api/patterns/usage/top?limit=20|0
pattern|/api/patterns/usage/pat-%06d|100000
trends|/api/patterns/usage/trends?limit=20|0
timeseries|/api/patterns/usage/pat-%06d/timeseries?bucket=hour|100000
heatmap|/api/patterns/usage/heatmap|0
pattern_heatmap|/api/patterns/usage/pat-%06d/heatmap|100000
cooccurring|/api/patterns/usage/pat-%06d/cooccurring?limit=20|99000
cooccurrence_top|/api/patterns/usage/cooccurrence/top?limit=20|0
lifecycle|/api/patterns/usage/lifecycle|0
agents|/api/agents|0
agent_profile|/api/agents/agent-%d/profile|999"}
(cd "$ROOT" && exec "$BIN" run --config "$dir/config.lua") 2>"$dir/engine.log" &
pid=$!
up() { curl -sf "http://127.0.0.1:$port/health" >/dev/null; }
wait_for 60 up
n_endpoints=$(printf '%s\n' "$ENDPOINTS" | grep -c '|')
# Enough events to keep ingest running through every run of every endpoint (wrk's own start-up
# and the pauses between runs included).
lg=
if [ "$RATE" -gt 0 ]; then
    "$PT_LOADGEN" --topic-prefix "$prefix" --events $((RATE * (DUR + 8) * RUNS * n_endpoints + RATE * 30)) \
        --rate "$RATE" --patterns 100000 --agents 1000 --time-span-hours 1 --compression none \
        --quiet >"$dir/loadgen.log" 2>&1 &
    lg=$!
fi
cat >"$dir/random.lua" <<'LUA'
-- PT_PATH with one %d: a popular-to-rare pattern (or agent) number per request, log-uniform,
-- so per-pattern endpoints are not measured on one cached row (PT_MAX 0: PT_PATH as it is).
-- PT_GAP_MS: each connection waits that long after every answer (REQ_RATE).
local template = os.getenv("PT_PATH")
local max = tonumber(os.getenv("PT_MAX") or "100000")
local gap = tonumber(os.getenv("PT_GAP_MS") or "0")
math.randomseed(7)
request = function()
    if max == 0 then
        return wrk.format("GET", template)
    end
    return wrk.format("GET", string.format(template, math.floor(max ^ math.random())))
end
if gap > 0 then
    delay = function() return gap end
end
LUA
REQ_RATE=${REQ_RATE:-0}
conns=16
gap=0
if [ "$REQ_RATE" -gt 0 ]; then
    conns=4
    gap=$((1000 * conns / REQ_RATE))
fi
results=()
names=()
while IFS='|' read -r ep path max; do
    names+=("$ep")
    for run in $(seq 1 "$RUNS"); do
        before=$(db_total)
        out=$(PT_PATH="$path" PT_MAX="$max" PT_GAP_MS="$gap" wrk -t2 -c"$conns" -d"${DUR}s" \
            --latency -s "$dir/random.lua" "http://127.0.0.1:$port")
        after=$(db_total)
        rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
        p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
        p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
        errs=$(echo "$out" | awk '/Non-2xx|Socket errors/ {print}' | tr '\n' ' ')
        echo "$ep run $run: $rps req/s, p50 $p50, p99 $p99, ingest during it $(( (after - before) / DUR )) uses/s ${errs}" >&2
        results+=("$ep $rps $p99")
    done
done <<<"$ENDPOINTS"
[ -n "$lg" ] && kill "$lg" 2>/dev/null || true
# how late the engine's 100 ms timer ran: time its one thread was busy (HTTP + ingest)
curl -s "http://127.0.0.1:$port/metrics" | awk '/^patterntrack_event_loop_lag_seconds_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5); b[le] = $2 } /^patterntrack_event_loop_lag_seconds_count/ { n = $2 } END { if (n > 0) printf "event loop lag: %d samples, %.2f %% over 10 ms, %.2f %% over 100 ms\n", n, 100 * (n - b["0.01"]) / n, 100 * (n - b["0.1"]) / n }' >&2
kill -TERM "$pid"; wait "$pid" || true
rm -rf "$dir"
to_ms() { # wrk latency (123.4us, 5.6ms, 1.2s) in ms
    awk '{v = $1; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /m$/) { sub(/m$/, "", v); v *= 60000 } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 } printf "%.2f\n", v }'
}
for ep in "${names[@]}"; do
    rps=$(printf '%s\n' "${results[@]}" | awk -v e="$ep" '$1 == e {print $2}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    p99=$(printf '%s\n' "${results[@]}" | awk -v e="$ep" '$1 == e {print $3}' | to_ms | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    echo "$ep median_req_per_s=$rps median_p99_ms=$p99"
done
