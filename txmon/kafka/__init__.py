"""Thin confluent-kafka helpers shared by the producer, the processor and the exporter."""

from __future__ import annotations

import logging
import re
import time

from confluent_kafka import KafkaError

#: librdkafka's "reached the end of a partition" event (only with enable.partition.eof).
#: confluent-kafka documents it under this underscored name; it is read here, once.
PARTITION_EOF = KafkaError._PARTITION_EOF  # noqa: SLF001
#: Its local "no answer in time" and "connection lost": a broker just starting.
TIMED_OUT = KafkaError._TIMED_OUT  # noqa: SLF001
TRANSPORT = KafkaError._TRANSPORT  # noqa: SLF001

#: librdkafka's lines go through Python logging under this name, from WARNING up:
#: its INFO chatter (`BGQUEUE ... Purging 1 unserved events`) is no news to a user.
LIBRDKAFKA_LOGGER = "txmon.kafka.librdkafka"
#: The same librdkafka message (numbers aside) is logged at most once in this period: a
#: broker that goes away is reported every 50 ms per connection otherwise.
DEDUP_SECONDS = 60.0


def probe_logger() -> logging.Logger:
    """The logger for a client probing a broker that may be down or may refuse it:
    librdkafka would print a connection error every 50 ms, and the probe reports the
    outcome itself."""
    quiet = logging.getLogger("txmon.kafka.probe")
    quiet.setLevel(logging.CRITICAL)
    return quiet


class Deduplicate(logging.Filter):
    """Drops a record whose message, numbers masked, was let through within `seconds`;
    the next one that passes says how many were dropped."""

    _NUMBERS = re.compile(r"\d+")

    def __init__(self, seconds: float = DEDUP_SECONDS):
        super().__init__()
        self.seconds = seconds
        self._last: dict[tuple[int, str], float] = {}
        self._dropped: dict[tuple[int, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, self._NUMBERS.sub("#", record.getMessage()))
        now = time.monotonic()
        if now - self._last.get(key, -self.seconds) < self.seconds:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like it in {self.seconds:g}s)"
            record.args = ()
        return True


def librdkafka_logger() -> logging.Logger:
    """Every txmon client's `logger` setting: librdkafka's own lines otherwise go
    straight to stderr as `%3|...|FAIL|...`, between the program's own messages."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, Deduplicate) for f in logger.filters):
        logger.addFilter(Deduplicate())
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    return logger
