"""A throw-away store for each try of a flow (the UI's playground, the deploy gate's tests).

Trying a flow must not spend the partner's real X12 control numbers nor record an
interchange as received (`flowyard test` and `flowyard run --dry-run` use
`flowyard.store.engines.scratch_store()` for the same reason). That context manager points the
whole process at the scratch database through FLOWYARD_DATABASE_URL, which a server
cannot do: `flowyard serve` runs the runtime in the same process, and while one
preview ran, a deployed flow's x12.generate would take its control numbers from the
scratch counter (numbers later sent again for real); two overlapping previews also
restore the variable in the wrong order, leaving the process pointed at a deleted
scratch file or a preview at the real store.

Here the scratch store is explicit instead: steps ask their context's services
(`flowyard.services`) for what they keep, and the flows compiled for a try get
`ScratchServices`, which answer with the engine of the run in progress in this
thread (a context variable set by `run_in_scratch`). The engine is an in-memory SQLite
database made on first use, so a preview that touches no store costs nothing, and
dropped when the run ends. Outside a run the services refuse: a flow compiled for a try can
never reach the real store by falling back to the default engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from ..services import ControlNumbers, KeyValueState, Services
from .connector_state import TableState
from .database import Base
from .x12_control import ControlNumbersStore


class ScratchStore:
    """One run's database, created when a step first asks for it."""

    def __init__(self) -> None:
        self._engine: Engine | None = None

    @property
    def used(self) -> bool:
        return self._engine is not None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from .migrations import import_models

            import_models()
            engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
            Base.metadata.create_all(engine)
            self._engine = engine
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


_current: ContextVar[ScratchStore | None] = ContextVar("flowyard_scratch_store", default=None)


class ScratchUnavailable(RuntimeError):
    """A flow compiled for a try asked for the store outside a scratch run."""


class ScratchServices(Services):
    """The services of flows compiled for a try: the X12 control numbers and connector
    state of the scratch store of the run in progress, never the real ones."""

    def _scratch(self) -> Engine:
        scratch = _current.get()
        if scratch is None:
            raise ScratchUnavailable("a flow compiled for a try ran outside a scratch run")
        return scratch.engine

    def control_numbers(self) -> ControlNumbers:
        return ControlNumbersStore(self._scratch())

    def state(self) -> KeyValueState:
        return TableState(self._scratch())


@contextmanager
def scratch_run() -> Iterator[ScratchStore]:
    """Steps of flows compiled with ScratchServices use a fresh scratch store in this block."""
    scratch = ScratchStore()
    token = _current.set(scratch)
    try:
        yield scratch
    finally:
        _current.reset(token)
        scratch.close()

