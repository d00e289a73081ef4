"""The durable state store (SPEC §6): outcomes per event, runs, and the watermark."""

from etl.state.scope import Scope
from etl.state.status import DestinationStatus, RunRecord, StatusReport
from etl.state.store import StateStore

__all__ = ["DestinationStatus", "RunRecord", "Scope", "StateStore", "StatusReport"]
