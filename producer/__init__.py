"""Puts transactions on the transactions topic: a simulator with labelled incidents, and
a replayer for historical per-minute files."""
