"""The durable runtime: runs the deployed flows against the store.

- `runtime.Runtime`: one process's runtime (sources, processing, deliveries, heartbeat).
- `queue`: claiming with leases and fenced commits (FOR UPDATE SKIP LOCKED on PostgreSQL).
- `policy`: retry back-off with jitter and the per-endpoint circuit breaker.
- `deployments`: the flows directory as the set of deployed flows.
- `replay`, `metrics`, `logs`, `tracing`, `server` (a Litestar app: /healthz, /metrics, /hooks/FLOW, the UI mounted), `cli`.
"""
