"""The validate's sink: nothing is sent; up to three masked examples per reject rule are
kept for `etl validate` to print."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from etl.quarantine import REJECT_REASON, REJECT_RULE
from etl.redact import mask_in_text

if TYPE_CHECKING:
    import httpx

    from etl.events import EventBatch
    from etl.runner.context import RunContext
    from etl.runner.prepare import Prepared

#: Reject examples kept per rule for `etl validate`.
EXAMPLES_PER_RULE = 3


class ValidateSink:
    """Collects distinct reject reasons per rule, masked (distinct examples teach more)."""

    def __init__(self, context: RunContext, client: httpx.AsyncClient | None = None) -> None:
        self.context = context
        self.examples: dict[str, list[str]] = {}

    def take_chunk(self, prepared: Prepared) -> None:
        """Keep the chunk's first distinct reasons of each rule, until there are enough."""
        rejects = prepared.rejects
        if rejects.empty:
            return
        customer = self.context.pipeline.event.customer
        for rule, group in rejects.groupby(REJECT_RULE, sort=False):
            shown = self.examples.setdefault(str(rule), [])
            for _, row in group.drop_duplicates(REJECT_REASON).iterrows():
                if len(shown) >= EXAMPLES_PER_RULE:
                    break
                reason = mask_in_text(
                    str(row[REJECT_REASON]),
                    email=row.get(customer.email) if customer.email else None,
                    phone=row.get(customer.phone_number) if customer.phone_number else None,
                )
                if reason not in shown:
                    shown.append(reason)

    def skip(self, event_ids: list[str]) -> None:
        """Nothing is held per event."""

    async def drain(self, batches: AsyncIterator[EventBatch]) -> None:
        """Nothing to send: each chunk only moves the progress line."""
        async for _ in batches:
            self.context.progress.tick()
