"""The contracts every component shares: topics, statuses and their groups, minutes,
event schemas, severities, incidents folded from alerts, metric names.

Import from here, never redefine: a producer and a consumer that agree by copy drift apart.
"""

from txmon.contracts import metrics
from txmon.contracts.events import (
    ALERT_EVENTS,
    SCORE_THRESHOLD,
    SEVERITIES,
    Alert,
    DeadLetter,
    DeadLetterReason,
    IncidentLabel,
    Severity,
    Transaction,
    WindowCount,
    WindowPartial,
    decode_transaction,
    encode,
    message_key,
    worse,
)
from txmon.contracts.minutes import MINUTE_MS, MinuteCounts, minute_id, minute_key
from txmon.contracts.statuses import GROUP_OF, GROUPS, STATUS_INDEX, STATUSES, Status
from txmon.contracts.topics import Topics, topics

__all__ = [
    "ALERT_EVENTS",
    "GROUPS",
    "GROUP_OF",
    "MINUTE_MS",
    "SCORE_THRESHOLD",
    "SEVERITIES",
    "STATUSES",
    "STATUS_INDEX",
    "Alert",
    "DeadLetter",
    "DeadLetterReason",
    "IncidentLabel",
    "MinuteCounts",
    "Severity",
    "Status",
    "Topics",
    "Transaction",
    "WindowCount",
    "WindowPartial",
    "decode_transaction",
    "encode",
    "message_key",
    "metrics",
    "minute_id",
    "minute_key",
    "topics",
    "worse",
]
