"""The durable state store (SPEC §6): outcomes per event, runs, and the watermark."""

from etl.state.store import RunRecord, StateStore, StateSummary

__all__ = ["RunRecord", "StateStore", "StateSummary"]
