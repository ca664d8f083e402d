"""Topic names. Each can be overridden by an environment variable so that several
pipelines (or several tests) can share one broker without stepping on each other."""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_PREFIX = "TXMON_TOPIC_"


@dataclass(frozen=True)
class Topics:
    transactions: str = "transactions"
    window_counts: str = "window-counts"
    alerts: str = "alerts"
    dead_letter: str = "dead-letter"
    # Internal: per-partition partial window counts, merged into window-counts.
    window_partials: str = "txmon-window-partials"
    # Internal: the counting stage's state per source partition (compacted).
    partition_state: str = "txmon-partition-state"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Topics:
        """`TXMON_TOPIC_TRANSACTIONS=tx2` renames the transactions topic, and so on."""
        env = os.environ if env is None else env
        names = {}
        for field in cls.__dataclass_fields__:
            value = env.get(ENV_PREFIX + field.upper())
            if value:
                names[field] = value
        return cls(**names)


def topics() -> Topics:
    """The topic names in force for this process (read from the environment each call)."""
    return Topics.from_env()
