"""State written by the previous version is read by this one (processor/state_schema.py).

The version-1 records under fixtures/state/ were written by the code before state
carried a schema (fixtures/state/make_v1.py says how): a worker upgraded over them keeps
an open incident open, resolves it later, and counts on top of stage 1's open windows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.fake_kafka import FakeMessage
from support.stage1 import NAMES, Rig, counts, tx

from processor.minutes import Minutes, MinuteState
from processor.state_schema import CURRENT, StateSchema, UnknownStateSchema
from processor.windows import WINDOW_MS, PartitionWindows
from txmon.contracts import WindowPartial, encode

FIXTURES = Path(__file__).parent / "fixtures" / "state"
MINUTES = StateSchema("minutes", MinuteState)
PARTITION = StateSchema("partition", PartitionWindows)


def v1(name: str) -> bytes:
    return (FIXTURES / f"{name}-v1.json").read_bytes()


def test_records_without_a_version_are_version_1_and_new_ones_carry_the_current():
    assert StateSchema.version_of(v1("minutes")) == 1
    assert StateSchema.version_of(v1("partition")) == 1
    upgraded = MINUTES.decode(v1("minutes"))
    assert upgraded.schema == CURRENT
    assert StateSchema.version_of(encode(upgraded)) == CURRENT == 2


def test_an_incident_open_in_old_state_stays_open_and_resolves_after_the_upgrade():
    state = MINUTES.decode(v1("minutes"))
    incident = state.incidents.incident
    assert incident is not None and incident.groups == ["denials"]
    minutes = Minutes(None, 60)  # the detector is re-fitted from the stored warm-up
    rng = np.random.default_rng(11)
    last = state.recent[-1][0]
    events = []
    for i in range(1, 31):
        t = last + i * WINDOW_MS
        c = counts(approved=int(rng.poisson(600)), denied=int(rng.poisson(20)),
                   failed=int(rng.poisson(8)), reversed=int(rng.poisson(3)))
        partial = WindowPartial(partition=0, closed_until=t + WINDOW_MS, idle=False,
                                windows={t: c}, sent_ms=1000)
        for closed in minutes.apply(state, state.last_offset + 1, partial):
            events += [(a.event, a.incident_id) for a in closed.alerts]
    assert ("resolved", incident.incident_id) in events
    assert not [e for e in events if e[0] == "open"], events


def test_stage_1_counts_on_top_of_old_state_after_the_upgrade():
    old = v1("partition")
    store = _Store([FakeMessage(NAMES.partition_state, 0, 0, old, b"0")])
    rig = Rig(store=store)
    rig.assign(0)
    restored = rig.counting.states[0]
    before = PARTITION.decode(old)
    assert restored == before and restored.schema == CURRENT
    [first, second] = sorted(before.open)
    rig.feed(0, tx(first + 2_000, "failed", 20), start=before.last_offset + 1)
    assert rig.counting.states[0].open[first] == counts(approved=5, failed=1)
    assert rig.counting.states[0].open[second] == counts(denied=1)


def test_a_record_from_a_newer_worker_is_refused_not_misread():
    newer = encode(PARTITION.decode(v1("partition"))).replace(
        b'"schema":2', b'"schema":3')
    with pytest.raises(UnknownStateSchema, match="schema 3, newer than this worker's 2"):
        PARTITION.decode(newer)


class _Store:
    """The compacted state topic as an earlier version left it."""

    def __init__(self, messages: list[FakeMessage]):
        self.messages = messages

    def on(self, topic: str) -> list[FakeMessage]:
        return [m for m in self.messages if m.topic() == topic]
