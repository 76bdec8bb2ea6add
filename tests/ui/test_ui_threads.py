"""UI work runs on the UI's own threads: however many UI requests are busy, the threads
the runtime in the same process claims and commits on (asyncio's default ones) stay
free, and so do logins (the password threads)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from flowyard_ui import auth
from flowyard_ui.routes.common import UI_WORKERS, off_loop


async def test_busy_ui_work_leaves_the_runtimes_threads_and_logins_free() -> None:
    release = threading.Event()
    busy = 0
    lock = threading.Lock()

    def slow_page() -> None:  # a UI request stuck in its work (a huge flow, a slow store)
        nonlocal busy
        with lock:
            busy += 1
        release.wait(30)

    stuck = [asyncio.ensure_future(off_loop(slow_page)) for _ in range(UI_WORKERS * 3)]
    try:
        for _ in range(200):  # every UI thread taken
            if busy >= UI_WORKERS:
                break
            await asyncio.sleep(0.01)
        assert busy == UI_WORKERS
        # what the runtime does for each claim and commit, and a login's own work
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "claimed"), timeout=2) == "claimed"
        assert await asyncio.wait_for(auth.password_work(lambda: "hashed"), timeout=2) == "hashed"
        assert busy == UI_WORKERS  # the other UI requests wait for a turn, on no one else's thread
    finally:
        release.set()
        await asyncio.gather(*stuck)
    assert busy == UI_WORKERS * 3


@pytest.mark.parametrize("value", [1, "two"])
async def test_off_loop_passes_arguments_and_returns_the_result(value: object) -> None:
    assert await off_loop(lambda v, *, twice: [v, v] if twice else v, value, twice=True) == [value, value]
