"""yotpo-events-etl: backfill and sync historical customer events into Yotpo."""
