"""The UI's budgets: a preview, a playground run or a check a user starts is stopped when
it runs longer (or grows the process more) than its budget, as the runtime stops a
message (`flowyard.budget`). The UI's own watchdog, so a user's preview never counts
against a message's budget, nor a message against a preview's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flowyard.budget import Watchdog

PREVIEW_SECONDS = 10.0
"""A playground run or a check: what a person waits for (a message's default is 30 s)."""
PREVIEW_MEMORY = 256 * 1024 * 1024
"""Growth of the process a preview may cause: well under a message's 1 GB, so the
runtime's watchdog in the same process does not blame one of its messages for it."""

WATCHDOG = Watchdog()


@contextmanager
def within_budget(what: str) -> Iterator[None]:
    """Run the block on this thread under the preview budget; a block over it is stopped
    with a `flowyard.budget.BudgetExceeded` (the engine turns it into the step's failure)."""
    WATCHDOG.start()
    watch = WATCHDOG.begin(what, PREVIEW_SECONDS, PREVIEW_MEMORY)
    try:
        yield
    finally:
        WATCHDOG.end(watch)
