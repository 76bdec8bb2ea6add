"""The walk pauses Python's garbage collector only while it reads and shapes a set."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from flowyard.x12.document import SetResult, walk
from flowyard.x12.guides import Guide, default_guide
from flowyard.x12.reader import X12InputError

from .conftest import PO_BODY, interchange

TEXT = interchange([("0001", "850", PO_BODY), ("0002", "850", PO_BODY)])


def resolve(transaction: str, version: str) -> Guide | None:
    return default_guide(transaction, version)


def test_the_consumer_runs_with_the_collector_on_and_it_stays_on() -> None:
    assert gc.isenabled()
    seen = [(type(event).__name__, gc.isenabled()) for event in walk(TEXT, resolve)]
    assert len(seen) == 4 and all(enabled for _, enabled in seen)
    assert gc.isenabled()


def test_an_input_error_leaves_the_collector_on() -> None:
    with pytest.raises(X12InputError):
        list(walk(TEXT[: len(TEXT) // 2].rsplit("~", 1)[0], resolve))
    assert gc.isenabled()


def test_a_collector_switched_off_by_the_application_stays_off() -> None:
    gc.disable()
    try:
        assert sum(isinstance(e, SetResult) for e in walk(TEXT, resolve)) == 2
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_concurrent_walks_leave_the_collector_on() -> None:
    big = interchange([(f"{n:04d}", "850", PO_BODY) for n in range(1, 400)])
    counts: list[int] = []

    def run() -> None:
        counts.append(sum(isinstance(e, SetResult) for e in walk(big, resolve)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counts == [399] * 4
    assert gc.isenabled()


BIG = interchange([("0001", "850", ["BEG*00*SA*PO-1**20261118",
                                    *[s for i in range(1, 12001) for s in (f"PO1*{i}*5*EA*1.25*PE*BP*A-{i}", f"PID*F****PART {i}")],
                                    "CTT*12000"])])


@pytest.fixture
def nothing_frozen() -> Iterator[None]:
    """The promotion is skipped while the application holds frozen objects (the UI
    freezes its heap at start-up, and UI tests may have run earlier in this process)."""
    frozen = gc.get_freeze_count()
    gc.unfreeze()
    yield
    if frozen:
        gc.freeze()


def test_a_big_set_reaches_the_consumer_in_the_old_generation(nothing_frozen: None) -> None:
    for event in walk(BIG, resolve, validate=False):
        if isinstance(event, SetResult):
            assert event.data is not None and len(event.data["PO1_loop"]) == 12000
            loop = event.data["PO1_loop"]
            assert any(o is loop for o in gc.get_objects(generation=2))
    assert gc.isenabled()


def test_a_freeze_made_by_the_application_is_kept() -> None:
    # an object of the application's, frozen: the collector lists only objects it still
    # looks at, so it must stay out of that list (the freeze count alone moves with what
    # other threads of this process free meanwhile)
    app_object: list[object] = [object()]
    gc.freeze()
    try:
        assert not any(o is app_object for o in gc.get_objects())
        assert sum(isinstance(e, SetResult) for e in walk(BIG, resolve, validate=False)) == 1
        assert not any(o is app_object for o in gc.get_objects()), "walk() unfroze the application's heap"
    finally:
        gc.unfreeze()
    assert any(o is app_object for o in gc.get_objects())  # and the check can see an unfrozen one
