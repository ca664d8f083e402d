from __future__ import annotations

import argparse
import hashlib
from datetime import UTC, datetime

import msgspec
import numpy as np
import pandas as pd
import pytest

from producer import cli
from producer.encode import IdFormat, encode_batch
from producer.incidents import parse_incident, parse_silence, parse_slice
from producer.simulate import Scenario, generate, minute_counts, minute_terminal_counts
from producer.terminals import (
    DEFAULT_SKEW,
    MAX_TERMINALS,
    TerminalPopulation,
    id_grid,
    rank_of,
    terminal_id,
)
from txmon.contracts import STATUSES, IncidentLabel, Transaction, encode, message_key
from txmon.contracts.events import decode_transaction
from txmon.errors import UserError

START = datetime(2026, 3, 2, 10, 0, 30, tzinfo=UTC)
SMALL = TerminalPopulation(1000)
#: sha256 of generate's keys and values for `_reference()`, taken before terminals existed.
REFERENCE_SHA256 = "1294856c3b838d1e9dc07b16f128cd6fa8ebd6995d5230e3be8a92cd9f79b79f"


def _events(scenario):
    """All of generate's events as flat arrays: ts_ms, status, rank (id number), terminal."""
    batches = list(generate(scenario))
    cat = np.concatenate
    terminal = None if scenario.terminals is None else cat([b.terminal for b in batches])
    return (cat([b.ts_ms for b in batches]), cat([b.status for b in batches]),
            cat([b.rank for b in batches]), terminal)


def _sliced(*slices, incidents=(), seed=3, duration=3900):
    return Scenario(START, rate=50, seed=seed, duration=duration, incidents=incidents,
                    terminals=SMALL, slices=slices)


def _span(label):
    return int(label.start.timestamp() * 1000), int(label.end.timestamp() * 1000)


def test_the_top_percent_carry_about_half_of_the_volume():
    fleet = TerminalPopulation(1_000_000)
    assert fleet.skew == DEFAULT_SKEW
    assert fleet.top_share(0.01) == pytest.approx(0.50, abs=0.005)
    assert fleet.top_share(0.1) == pytest.approx(0.72, abs=0.01)
    ranks = fleet.assign(np.random.default_rng(0), 2_000_000)
    assert ranks.dtype == np.int32 and ranks.min() >= 0 and ranks.max() < fleet.size
    assert np.mean(ranks < 10_000) == pytest.approx(0.50, abs=0.002)
    assert np.mean(ranks == 0) == pytest.approx(fleet.weights()[0], rel=0.02)


@pytest.mark.parametrize("size, skew", [(1, 0.89), (7, 0.0), (1000, 0.89), (200_000, 0.89),
                                        (100_000, 0.0), (100_000, 2.5)])
def test_the_guide_table_draws_what_a_binary_search_draws(size, skew):
    fleet = TerminalPopulation(size, skew)
    u = np.random.default_rng(size).random(300_000)
    edges = fleet._cumulative
    near = np.concatenate([edges, np.nextafter(edges, 0), [0.0, np.nextafter(1.0, 0)]])
    u = np.concatenate([u, near[near < 1.0]])
    assert (fleet.locate(u) == fleet.search(u)).all()


def test_same_generator_same_ranks():
    a = SMALL.assign(np.random.default_rng(5), 10_000)
    b = SMALL.assign(np.random.default_rng(5), 10_000)
    c = SMALL.assign(np.random.default_rng(6), 10_000)
    assert (a == b).all() and not (a == c).all()
    sc = _sliced(parse_slice("top:5:failed:10m"))
    first, again = _events(sc), _events(_sliced(parse_slice("top:5:failed:10m")))
    assert all((x == y).all() for x, y in zip(first, again, strict=True))
    other = _events(_sliced(parse_slice("top:5:failed:10m"), seed=4))
    assert len(other[3]) != len(first[3]) or not (other[3] == first[3]).all()


def test_populations_are_values_and_checked():
    assert TerminalPopulation(10) == TerminalPopulation(10, DEFAULT_SKEW)
    assert len({TerminalPopulation(10), TerminalPopulation(10), TerminalPopulation(11)}) == 2
    for bad in (dict(size=0), dict(size=MAX_TERMINALS + 1), dict(size=5, skew=-1)):
        with pytest.raises(ValueError):
            TerminalPopulation(**bad)


def test_terminal_ids():
    assert terminal_id(412) == "T-0000412"
    assert rank_of("T-0000412") == 412 and rank_of("T-412") is None and rank_of("x") is None
    grid = id_grid(np.array([0, 412, MAX_TERMINALS - 1], dtype=np.int32))
    assert [bytes(r) for r in grid] == [b"T-0000000", b"T-0000412", b"T-9999999"]


def _reference():
    return Scenario(datetime(2026, 3, 2, 16, 59, 30, tzinfo=UTC), rate=30, seed=11,
                    duration=3720, incidents=(parse_incident("failed:x20:5m@10m"),
                                              parse_silence("3m@30m")))


def test_without_a_population_the_bytes_are_as_before():
    digest = hashlib.sha256()
    for batch in generate(_reference()):
        for key, value in zip(*batch.encode(), strict=True):
            digest.update(key + b"\n" + value + b"\n")
    assert digest.hexdigest() == REFERENCE_SHA256


def test_a_population_alone_only_adds_terminals():
    plain = _events(_reference())
    sc = _reference()
    fleet = Scenario(sc.start, sc.rate, sc.seed, sc.duration, sc.incidents, terminals=SMALL)
    with_terminals = _events(fleet)
    assert all((a == b).all() for a, b in zip(plain[:3], with_terminals[:3], strict=True))
    assert plain[3] is None and len(np.unique(with_terminals[3])) > 500


def test_a_failing_slice_fails_only_its_terminals_in_its_span():
    sc = _sliced(parse_slice("T-0000003,T-0000010,T-0000500:failed:10m@10m"))
    ts, status, _, terminal = _events(sc)
    lo, hi = _span(sc.labels()[0])
    inside = (ts >= lo) & (ts < hi)
    mine = np.isin(terminal, [3, 10, 500])
    failed = STATUSES.index("failed")
    assert (mine & inside).sum() > 100
    assert (status[mine & inside] == failed).all()
    assert (status[mine & ~inside] != failed).mean() > 0.99
    assert (status[~mine & inside] != failed).mean() > 0.99


def test_a_silent_slice_sends_nothing_in_its_span_and_leaves_the_rest():
    sc = _sliced(parse_slice("top:4:silent:20m@15m"))
    ts, status, rank, terminal = _events(sc)
    lo, hi = _span(sc.labels()[0])
    mine = terminal < 4
    assert not (mine & (ts >= lo) & (ts < hi)).any()
    assert (mine & (ts < lo)).sum() > 1000 and (mine & (ts >= hi)).sum() > 1000
    full = _events(_sliced())
    dropped = (full[3] < 4) & (full[0] >= lo) & (full[0] < hi)
    assert dropped.sum() > 1000
    assert all((a[~dropped] == b).all() for a, b in zip(full, (ts, status, rank, terminal),
                                                           strict=True))


def test_silent_wins_and_the_last_status_wins():
    sc = _sliced(parse_slice("top:2:failed:10m@10m"), parse_slice("ranks:1-2:denied:10m@10m"),
                 parse_slice("T-0000002:silent:10m@10m"))
    ts, status, _, terminal = _events(sc)
    lo, hi = _span(sc.labels()[0])
    inside = (ts >= lo) & (ts < hi)
    by_rank = {r: set(status[inside & (terminal == r)].tolist()) for r in range(3)}
    assert by_rank == {0: {STATUSES.index("failed")}, 1: {STATUSES.index("denied")}, 2: set()}


def test_minute_counts_equal_the_events_per_minute_with_slices():
    sc = _sliced(parse_slice("top:3:failed:10m@10m"), parse_slice("ranks:0-49:silent:20m@15m"),
                 incidents=(parse_incident("denied:x5:10m@20m"),), duration=5400)
    table = minute_counts(sc)
    ts, status, _, _ = _events(sc)
    minutes = pd.to_datetime(ts // 60000 * 60, unit="s", utc=True)
    pivot = (pd.crosstab(minutes, pd.Categorical.from_codes(status, STATUSES))
             .reindex(index=table.index, columns=list(STATUSES), fill_value=0))
    assert len(table) == 91
    assert (pivot.to_numpy() == table.to_numpy()).all()


def test_minute_terminal_counts_equal_the_events():
    sc = _sliced(parse_slice("top:3:failed:10m@10m"), parse_slice("ranks:0-49:silent:20m@15m"))
    counts = minute_terminal_counts(sc)
    ts, status, _, terminal = _events(sc)
    events = pd.DataFrame({"minute": ts // 60000 * 60, "terminal": terminal, "status": status})
    expected = events.groupby(["minute", "terminal", "status"]).size()
    assert len(counts) == len(expected)
    assert (counts.minute == expected.index.get_level_values(0)).all()
    assert (counts.terminal == expected.index.get_level_values(1)).all()
    assert (counts.status == expected.index.get_level_values(2)).all()
    assert (counts.count == expected.to_numpy()).all()
    with pytest.raises(ValueError):
        minute_terminal_counts(_reference())


def test_terminal_ids_round_trip_through_encode_and_decode():
    rng = np.random.default_rng(0)
    n = 3000
    ts = np.sort(rng.integers(1772400000000, 1772500000000, n))
    status = rng.integers(0, len(STATUSES), n)
    number = rng.integers(0, 10**8, n)
    who = SMALL.assign(rng, n)
    for ids in (IdFormat(b"s7-", "hex"), IdFormat(b"day-", "minute", status_suffix=True)):
        keys, values = encode_batch(ts, status, number, ids, id_grid(who))
        _, plain = encode_batch(ts, status, number, ids)
        for i in range(0, n, 17):
            tx = decode_transaction(values[i])
            assert tx.terminal_id == terminal_id(int(who[i])) and keys[i] == message_key(tx)
            assert msgspec.structs.replace(tx, terminal_id=None) == decode_transaction(plain[i])
    batch = next(generate(_sliced()))
    decoded = [decode_transaction(v) for v in batch.encode()[1]]
    assert decoded == batch.transactions()
    assert all(isinstance(t, Transaction) and t.terminal_id for t in decoded)


@pytest.mark.parametrize(
    "spec, ranks, effect, duration, offset",
    [
        ("T-0000412,T-0000977:failed:15m@1h", (412, 977), "failed", 900, 3600),
        ("T-0000977,T-0000412,T-0000977:denied:90s", (412, 977), "denied", 90, 300),
        ("top:20:silent:30m@2h", range(20), "silent", 1800, 7200),
        ("ranks:500-999:Failed:45m@11h", range(500, 1000), "failed", 2700, 39600),
    ],
)
def test_slice_specs(spec, ranks, effect, duration, offset):
    s = parse_slice(spec)
    assert (s.ranks, s.effect, s.duration, s.offset, s.spec) == (
        ranks, effect, duration, offset, spec)


@pytest.mark.parametrize(
    "spec, words",
    [
        ("failed:15m", "expected"),
        ("T-0000001:broken:15m", "effect"),
        ("T-0000001:failed:0m", "duration"),
        ("T-0000001:failed:soon", "duration"),
        ("T-0000001:failed:5m@soon", "duration"),
        ("T-1:failed:5m", "T-0000412"),
        ("T-0000001,,bogus:failed:5m", "bogus"),
        ("top:0:failed:5m", "top:N"),
        ("top:x:failed:5m", "top:N"),
        ("ranks:9-3:failed:5m", "ranks:A-B"),
        ("ranks:3:failed:5m", "ranks:A-B"),
    ],
)
def test_bad_slice_specs_say_why(spec, words):
    with pytest.raises(UserError) as err:
        parse_slice(spec)
    assert f"--slice {spec}" in str(err.value) and words in str(err.value)


def test_slice_labels_name_the_terminals():
    start = datetime(2026, 3, 2, tzinfo=UTC)
    label = parse_slice("T-0000412,T-0000977:failed:15m@1h").label(start)
    assert (label.kind, label.statuses, label.factor) == ("slice", ["failed"], 1.0)
    assert label.terminals == ["T-0000412", "T-0000977"]
    assert label.id == "slice-failed-T-0000412+1-20260302T010000Z"
    assert msgspec.json.decode(encode(label), type=IncidentLabel) == label
    silent = parse_slice("top:1:silent:10m@2h").label(start)
    assert (silent.statuses, silent.factor, silent.terminals) == (
        list(STATUSES), 0.0, ["T-0000000"])
    assert parse_incident("failed:x2:5m").label(start).terminals == []


def test_slices_need_a_population_that_holds_them():
    with pytest.raises(ValueError, match="population"):
        Scenario(START, rate=1, slices=(parse_slice("top:3:failed:1m"),))
    with pytest.raises(ValueError, match="T-0001000"):
        Scenario(START, rate=1, terminals=SMALL, slices=(parse_slice("ranks:0-1000:failed:1m"),))


def _produce_args(*argv):
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["produce", "--seed", "1", *argv])


def test_the_produce_flags():
    sc = cli._scenario(_produce_args("--terminals", "1000", "--slice", "top:3:failed:5m"))()
    assert sc.terminals == SMALL and sc.slices == (parse_slice("top:3:failed:5m"),)
    assert cli._scenario(_produce_args())().terminals is None
    for argv, words in [(("--slice", "top:3:failed:5m"), "--terminals"),
                        (("--terminals", "10", "--slice", "top:11:failed:5m"), "T-0000010"),
                        (("--terminals", "-1"), "--terminals")]:
        with pytest.raises(UserError, match=words):
            cli._scenario(_produce_args(*argv))
