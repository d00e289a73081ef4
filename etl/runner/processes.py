"""Chunks split and transformed in forked processes, for the runs that only prepare.

A dry run of a CSV/Parquet source (`--processes N`) does nothing but prepare chunks, and
preparing is CPU-bound Python that holds the GIL: in one process it uses one core
however many threads it has (a second preparing thread measured no faster). Here the
run's process reads each chunk as Arrow (`etl.extract.files.ArrowChunk`, cheap to hand
over a pipe), hands it to one of N worker processes in turn, and takes the `Prepared`
chunks back in source order. A worker turns its chunk into pandas, applies the window
and the store filter, validates, transforms, counts the column types and renders the
rejects' quarantine lines; the diff against the state (§6), the tally, the quarantine
file and the sink stay in the run's process, so a run's outcome is the one it has in
one process.

Each worker holds one chunk at a time, and gets its next one only once its last result
is read: a worker blocked sending a result while the run blocks sending it a chunk
would be a deadlock. The run reads its next chunk while the workers prepare, so a worker
waits only for the pipe.

Workers are forked when the pool is made, before the run starts a thread, and inherit
the run's definition (nothing is pickled but chunks and results). They ignore SIGINT (the
run stops them), and end when the run closes the pool or when their pipe reaches EOF
because the run's process is gone.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from etl.memory import keep_freed_malloc

if TYPE_CHECKING:
    import pandas as pd

    from etl.column_types import ColumnTypes, TypeCounts
    from etl.extract import Window
    from etl.extract.files import ArrowChunk
    from etl.report import RunReport
    from etl.runner.prepare import Prepared, Preparer

#: How a worker makes the frame to prepare from an Arrow chunk and the run's window.
Frames = Callable[["ArrowChunk", "Window | None"], "pd.DataFrame"]
#: How a worker renders a chunk's rejects as quarantine lines (`etl.quarantine.csv_rows`).
Render = Callable[["pd.DataFrame"], str]

_Result = tuple["Prepared | None", "TypeCounts", float]


class _Failed:
    """An exception raised in a worker, carried back to be raised in the run."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _serve(
    tasks: Connection, others: list[Connection], preparer: Preparer, frames: Frames, render: Render
) -> None:
    """A worker's life: prepare each chunk it is sent until None or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    keep_freed_malloc()
    for end in others:  # else the run's end of a pipe would never reach EOF
        end.close()
    while True:
        try:
            task = tasks.recv()
        except EOFError:
            return
        if task is None:
            return
        started = time.perf_counter()
        try:
            frame = frames(*task)
            prepared = preparer.transformed(frame) if len(frame) else None
            del frame
            if prepared is not None and not prepared.rejects.empty:
                prepared = replace(prepared, rejects_csv=render(prepared.rejects))
            result: _Result | _Failed = (
                prepared,
                preparer.types.taken(),
                time.perf_counter() - started,
            )
        except Exception as exc:  # every error is the run's to report
            result = _Failed(exc)
        del task
        try:
            tasks.send(result)
        except OSError:  # the run closed the pool while this chunk was prepared
            return


class PreparePool:
    """N forked workers preparing a run's chunks in source order."""

    def __init__(self, preparer: Preparer, frames: Frames, render: Render, processes: int) -> None:
        context = multiprocessing.get_context("fork")
        pipes = [context.Pipe() for _ in range(processes)]
        ours = [end for end, _ in pipes]
        self.workers: list[tuple[Any, Connection]] = []
        for end, theirs in pipes:
            worker = context.Process(
                target=_serve, args=(theirs, ours, preparer, frames, render), name="etl-prepare"
            )
            worker.daemon = True
            worker.start()
            theirs.close()
            self.workers.append((worker, end))
        # The run's process now only passes chunks on and writes what comes back: 20 MB
        # of results a chunk, each page faulted afresh when blocks above 1 MiB are
        # unmapped on free (`etl.memory.bound_malloc`), 500,000 faults on 1M rows.
        keep_freed_malloc(trim_threshold=16 << 20)

    def prepared(
        self,
        chunks: Iterator[ArrowChunk],
        window: Window | None,
        types: ColumnTypes,
        report: RunReport,
    ) -> Iterator[Prepared]:
        """Every non-empty chunk of `chunks`, prepared, in order; the column types counted
        in the workers are added to `types`, their preparing time to `report.prepare_s`."""
        busy: deque[Connection] = deque()
        idle = deque(end for _, end in self.workers)
        upcoming = next(chunks, None)
        while upcoming is not None or busy:
            while idle and upcoming is not None:
                idle[0].send((upcoming, window))
                busy.append(idle.popleft())
                upcoming = next(chunks, None)  # read while the workers prepare
            end = busy.popleft()
            prepared, counts, seconds = self._received(end)
            idle.append(end)
            types.add(counts)
            report.prepare_s += seconds
            if prepared is not None:
                yield prepared
            del prepared

    def _received(self, end: Connection) -> _Result:
        try:
            result: _Result | _Failed = end.recv()
        except EOFError:
            codes = [worker.exitcode for worker, _ in self.workers]
            problem = f"a preparing process ended unexpectedly (exit codes {codes})"
            raise RuntimeError(problem) from None
        if isinstance(result, _Failed):
            raise result.error
        return result

    def close(self) -> None:
        """Stop the workers: those idle end at once, busy ones are terminated."""
        for _, end in self.workers:
            with contextlib.suppress(OSError):  # already gone
                end.send(None)
            end.close()
        for worker, _ in self.workers:
            worker.join(timeout=1)
            if worker.is_alive():
                worker.terminate()
                worker.join()
