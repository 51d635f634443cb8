"""The session kernel: one lifecycle, one bus and one start-up path for every socket (docs/architecture.md)."""
