"""The run's own entries in the state store (SPEC §6): its run row, the id key column
types, the watermark and the property types sent; opened as the plan says.

A validate never opens state, a dry run only reads a state that already exists, and a
real run creates it and holds the pipeline's run lock until `close`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from etl.column_types import ColumnTypes, key_type_problem, type_changes
from etl.errors import AbortError, StateError
from etl.runner.plan import Plan, StateUse

if TYPE_CHECKING:
    from etl.definition import Pipeline
    from etl.report import RunReport
    from etl.runner.watermark import Watermark
    from etl.state import Scope, StateStore


def _absent(url: str) -> bool:
    """A SQLite file that does not exist yet (checked without loading SQLAlchemy)."""
    return url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists()


class Ledger:
    """Reads and writes what the state store keeps about the run itself."""

    def __init__(self, pipeline: Pipeline, plan: Plan) -> None:
        self.pipeline = pipeline
        self.plan = plan
        self.writes = plan.state is StateUse.WRITE
        self.state = self._open()

    def _open(self) -> tuple[StateStore, Scope] | None:
        url = self.pipeline.state_url
        if self.plan.state is StateUse.NONE or (not self.writes and _absent(url)):
            return None
        from etl.state import Scope, StateStore  # SQLAlchemy loads only when there is state

        scope, lock = Scope.of(self.pipeline), self.pipeline.name
        stores = self.plan.stores
        if self.pipeline.destination.store_column is not None and stores is not None:
            # A partition's runs and watermark are its own, and so is its run lock (SPEC §11).
            scope = scope.for_store(f"{scope.store_id}{stores}")
            lock = f"{lock}.{str(stores).replace('/', 'of')}"
        store = StateStore(url)
        try:
            if self.writes:
                store.hold_run_lock(lock)
            store.adopt_legacy(scope)
        except BaseException:
            store.close()
            raise
        return store, scope

    @property
    def writer(self) -> StateStore | None:
        """The store, when this run writes to it."""
        return self.state[0] if self.state is not None and self.writes else None

    def begin(self) -> int | None:
        """The run's id: a new run row when the run writes, else None."""
        store = self.writer
        if store is None or self.state is None:
            return None
        try:
            return store.begin_run(self.state[1])
        except StateError:
            store.close()
            raise

    def stored_watermark(self) -> Any:
        """Where the window starts when the plan reads the watermark (None otherwise)."""
        if self.state is None or not self.plan.reads_watermark:
            return None
        store, scope = self.state
        return store.watermark(scope)

    def check_key_types(self, types: ColumnTypes) -> None:
        """Stop (exit 3) if an undeclared id key column changed type; a real run records them."""
        if self.state is None:
            return
        store, name, hashed = self.state[0], self.pipeline.name, types.hashed
        problem = key_type_problem(
            store.sent_types(name, "key"), hashed, self.pipeline.source.columns
        )
        if problem:
            raise AbortError(problem)
        if self.writes:
            store.set_sent_types(name, "key", hashed)

    def finish(
        self, report: RunReport, types: ColumnTypes, watermark: Watermark, *, complete: bool
    ) -> None:
        """Record the run's end, the new watermark and the types sent; close the store.

        A state error (a full disk) still lets the summary print, with the cause in it."""
        if self.state is None:
            return
        store, scope = self.state
        error = report.error
        try:
            sent = types.property_types()
            report.type_changes = type_changes(
                store.sent_types(self.pipeline.name, "property"), sent
            )
            if self.writes:
                # The run's end first: on a full disk it is what the reserved space is for.
                report.watermark = self._advance(watermark, report.outcome, complete)
                store.end_run(report.run_id or 0, report.exit_code, report.to_dict())
                if report.delivered:
                    store.set_sent_types(self.pipeline.name, "property", sent)
            else:
                report.watermark = store.watermark(scope)
        except StateError as exc:
            if error is None:
                report.outcome, report.exit_code, report.error = "aborted", exc.exit_code, str(exc)
                exc.report = report
                raise
            report.error = f"{error}; the run could not be recorded ({exc})"
        finally:
            store.close()

    def _advance(self, watermark: Watermark, outcome: str, complete: bool) -> Any:
        """Only a complete read of the stored window may move the watermark (SPEC §6)."""
        assert self.state is not None
        store, scope = self.state
        old = store.watermark(scope)
        if not self.plan.moves_watermark or outcome != "completed" or not complete:
            return old
        new = watermark.new_value(old)
        if new is not None and new != old:
            store.set_watermark(scope, new)
        return new
