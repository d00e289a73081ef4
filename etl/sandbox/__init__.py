"""The local emulator of the custom-event API (SPEC §8): app, server, process control."""
