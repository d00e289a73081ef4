"""Adapters to the schedulers people already run (SPEC §11); each is an optional extra."""
