"""Counters that dashboards take increase() or rate() of start at 0 for every label value
the pipeline can produce, as client_python's docs advise.

A labelled series that first appears at 1 has no increase in PromQL (there is no earlier
sample to subtract), so a run with one incident showed 'Incidents opened (range)' and
'Alert records per hour' at 0. Created at 0 from the start, the first incident is an
increase of 1 like any other. The open-incidents gauge starts at 0 too, so 'Incidents
open' says 0 rather than "No data" before the first incident.
"""

from __future__ import annotations

from txmon.contracts import ALERT_EVENTS, GROUPS, SEVERITIES, DeadLetterReason

#: Which component writes each reason (producer/cli.py: bad rows; the rest: counting).
REPLAY_REASONS = {DeadLetterReason.BAD_ROW}


def start_at_zero(metrics) -> None:
    """Create every known series of `metrics` (a PipelineMetrics) at 0."""
    for group in GROUPS:
        for severity in SEVERITIES:
            metrics.incidents_total.labels(group, severity)
            metrics.incidents_open.labels(group, severity)
            for event in ALERT_EVENTS:
                metrics.alerts_total.labels(event, group, severity)
    for reason in DeadLetterReason:
        source = "replay" if reason in REPLAY_REASONS else "processor"
        metrics.dead_letters.labels(reason.value, source)
