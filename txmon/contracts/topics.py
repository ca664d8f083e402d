"""Topic names. Each can be overridden by an environment variable so that several
pipelines (or several tests) can share one broker without stepping on each other."""

from __future__ import annotations

from collections.abc import Mapping

from txmon.settings import Group, load, setting

ENV_PREFIX = "TXMON_TOPIC_"


class Topics(Group):
    transactions: str = setting("TXMON_TOPIC_TRANSACTIONS", "transactions", "topic name")
    window_counts: str = setting("TXMON_TOPIC_WINDOW_COUNTS", "window-counts", "topic name")
    alerts: str = setting("TXMON_TOPIC_ALERTS", "alerts", "topic name")
    dead_letter: str = setting("TXMON_TOPIC_DEAD_LETTER", "dead-letter", "topic name")
    window_partials: str = setting(
        "TXMON_TOPIC_WINDOW_PARTIALS", "txmon-window-partials",
        "internal topic: per-partition partial window counts, merged into window-counts")
    partition_state: str = setting(
        "TXMON_TOPIC_PARTITION_STATE", "txmon-partition-state",
        "internal topic: the counting stage's state per source partition (compacted)")
    idempotency: str = setting(
        "TXMON_TOPIC_IDEMPOTENCY", "txmon-idempotency",
        "internal topic: the answer to each POST /transactions batch sent with an "
        "Idempotency-Key, written in the batch's own transaction (compacted)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Topics:
        """`TXMON_TOPIC_TRANSACTIONS=tx2` renames the transactions topic, and so on."""
        return load(cls, env)


def topics() -> Topics:
    """The topic names in force for this process (read from the environment each call)."""
    return Topics.from_env()
