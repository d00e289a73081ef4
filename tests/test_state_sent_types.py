"""The state's memory of sent types (SPEC §6, type drift) on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from test_state import store, url  # noqa: F401  (the per-database store fixtures)

from etl.state import StateStore


def test_sent_types_are_kept_per_pipeline_and_role_and_replaced_by_name(store: StateStore) -> None:
    assert store.sent_types("orders", "property") == {}
    store.set_sent_types("orders", "property", {"total": "number", "coupon": "string"})
    store.set_sent_types("orders", "key", {"order_id": "integer"})
    store.set_sent_types("refunds", "property", {"total": "string"})
    store.set_sent_types("orders", "property", {"total": "string"})  # coupon stays as it was
    assert store.sent_types("orders", "property") == {"total": "string", "coupon": "string"}
    assert store.sent_types("orders", "key") == {"order_id": "integer"}
    assert store.sent_types("refunds", "property") == {"total": "string"}
    store.set_sent_types("orders", "key", {})  # nothing to record: nothing changes
    assert store.sent_types("orders", "key") == {"order_id": "integer"}
