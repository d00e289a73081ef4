"""Room kept aside on a SQLite state's disk, so a run stopped by a full disk can still
record itself as aborted (SPEC §6): a small file written at the start of a run and
deleted to free its space when a write fails, before the run's end is recorded."""

from __future__ import annotations

from pathlib import Path

#: Enough for the WAL frames of the final update of the run's row (a few 4 KiB pages).
RESERVE_BYTES = 64 * 1024


class Reserve:
    """A reserve file; `free` gives its space back (once) and says whether it had any."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"\0" * RESERVE_BYTES)

    def free(self) -> bool:
        """Delete the file; True when there was space to give back."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
