"""Writes `state_v2.db`: a state file made by the code of schema version 2 (the release
before leased work), for the upgrade test in tests/test_state_migration.py.

Pipeline `orders_v2` at `http://127.0.0.1:8787`, store `store-v2`: one run (exit 1)
that recorded o-1 and o-2 delivered, o-3 failed (its body kept), and the watermark
2024-05-02T00:00:00Z.

Run from the repository root with the code of that version first on the path:
`PYTHONPATH=<checkout of version 2> .venv/bin/python tests/data/make_state_v2.py`.
"""

from __future__ import annotations

from pathlib import Path

from etl.events import Event, Outcome, Status
from etl.state import Scope, StateStore

HERE = Path(__file__).parent
SCOPE = Scope("orders_v2", "http://127.0.0.1:8787", "store-v2")


def main() -> None:
    target = HERE / "state_v2.db"
    target.unlink(missing_ok=True)
    store = StateStore(f"sqlite:///{target}")
    run_id = store.begin_run(SCOPE)
    store.record_many(
        SCOPE,
        run_id,
        [
            Outcome(
                Event(f"id-{i}", f'{{"n": {i}}}'.encode(), cursor=f"2024-05-0{i}"),
                Status.DELIVERED,
                1,
            )
            for i in (1, 2)
        ]
        + [Outcome(Event("id-3", b'{"n": 3}', cursor="2024-05-03"), Status.FAILED, 3, "HTTP 500")],
    )
    store.set_watermark(SCOPE, "2024-05-02T00:00:00Z")
    store.end_run(run_id, 1, {"delivered": 2, "failed": 1})
    store.close()
    for extra in HERE.glob("state_v2.db-*"):
        extra.unlink()


if __name__ == "__main__":
    main()
