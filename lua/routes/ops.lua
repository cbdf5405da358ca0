-- Operations: /health for load balancers and people, /metrics for Prometheus.
return {
    {
        method = "GET", path = "/health", tags = { "operations" },
        summary = "State of Kafka, PostgreSQL, the last flush and the lag; " ..
            "503 when PostgreSQL is unreachable",
        responses = { ["200"] = "Serving", ["503"] = "PostgreSQL unreachable" },
        handler = function()
            local h = pt.health()
            -- a probe wants an answer within its own timeout, even from a stalled server
            local ok, err = pcall(db.query_within, 2000, "SELECT 1 AS one")
            h.postgresql = { reachable = ok,
                error = (not ok) and (type(err) == "table" and err.detail or tostring(err)) or nil }
            h.status = ok and "ok" or "degraded"
            if h.kafka.enabled and not h.kafka.brokers_reachable then
                h.status = "degraded"
            end
            return ok and 200 or 503, h
        end,
    },
    {
        method = "GET", path = "/metrics", tags = { "operations" },
        summary = "Prometheus metrics (text exposition format)",
        responses = { ["200"] = { description = "Metrics", content_type = "text/plain",
            schema = { type = "string" } } },
        handler = function()
            return 200, pt.metrics(), "text/plain; version=0.0.4; charset=utf-8"
        end,
    },
}
