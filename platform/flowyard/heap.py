"""The process's long-lived heap, kept out of the garbage collector's way."""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Keep the objects of start-up (modules, compiled templates, registries, the loaded
    flows and their connectors: most of the heap, and alive for good) out of the
    collector's full collections.

    A full collection walked all of them every few hundred requests or batches: it was
    most of the UI's worst preview latencies (issue #7's p95), and a sixth of a busy
    worker's CPU (perf: `gc_collect_main`, 2 PostgreSQL workers draining a backlog).
    Now it walks only what was allocated since. Called again later (the UI's own
    start-up after the runtime's), it freezes what was added meanwhile."""
    gc.collect()
    gc.freeze()
