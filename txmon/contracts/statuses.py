"""Transaction statuses and the groups an incident is opened for.

The group names are a contract, not a detail of the detector: they are the `group` of
every alert record, the `group` label of the incident metrics, what the Prometheus rules
and the dashboards select on, and what `txmon evaluate` scores labels against.
"""

from __future__ import annotations

from typing import Literal, get_args

Status = Literal[
    "approved", "denied", "failed", "reversed", "backend_reversed", "refunded", "processing"
]
STATUSES: tuple[str, ...] = get_args(Status)
#: Position of each status in a window's count vector (STATUSES order).
STATUS_INDEX: dict[str, int] = {s: i for i, s in enumerate(STATUSES)}

#: Status groups, in the order incidents list them; the statuses each one watches.
GROUPS: dict[str, tuple[str, ...]] = {
    "failures": ("failed",),
    "denials": ("denied",),
    "reversals": ("reversed", "backend_reversed"),
    "outage": ("approved",),
}
#: The group a watched status belongs to (statuses nobody is paged for have none).
GROUP_OF: dict[str, str] = {s: g for g, members in GROUPS.items() for s in members}
