"""Pure, deterministic core: data model and schedule engine (no clock, no I/O)."""
