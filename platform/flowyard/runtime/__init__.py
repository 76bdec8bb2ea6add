"""The durable runtime: runs the deployed flows against the store.

- `runtime.Runtime`: one process's runtime, wiring its parts with the heartbeat and retention:
  - `running`: what runs here (each deployed flow at its deployed version, from its snapshot);
  - `intake`: the sources, supervised, and the group commit of what they accept;
  - `processing`: claim, run the steps, first delivery attempts, one fenced commit;
  - `delivery`: delivery attempts, retries with back-off, shared circuit breakers.
- `policy`: retry timing and the per-endpoint circuit breaker; `outcomes`: the rows a
  processed message leaves.
- `flows` (compiling a deployed flow), `sources` (source locks, the accept writer),
  `gitops` (--deploy-from), `metrics`, `logs`, `tracing`, `wakeups`, `snapshots`
  (trace snapshots), `server` (a Litestar app: /healthz, /metrics, /hooks/FLOW, the UI
  mounted), `cli`.
"""
