"""The contracts every component shares: topics, statuses, event schemas, metric names.

Import from here, never redefine: a producer and a consumer that agree by copy drift apart.
"""

from txmon.contracts import metrics
from txmon.contracts.events import (
    STATUSES,
    Alert,
    DeadLetter,
    DeadLetterReason,
    IncidentLabel,
    Status,
    Transaction,
    WindowCount,
    WindowPartial,
    decode_transaction,
    encode,
    message_key,
)
from txmon.contracts.topics import Topics, topics

__all__ = [
    "STATUSES",
    "Alert",
    "DeadLetter",
    "DeadLetterReason",
    "IncidentLabel",
    "Status",
    "Topics",
    "Transaction",
    "WindowCount",
    "WindowPartial",
    "decode_transaction",
    "encode",
    "message_key",
    "metrics",
    "topics",
]
