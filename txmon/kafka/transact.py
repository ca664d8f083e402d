"""Writing batches all or nothing: Kafka transactions, shared by concurrent callers.

A transactional producer runs one transaction at a time, and a commit costs a round
trip to the transaction coordinator and to every partition written. So batches are
group-committed: whatever batches are waiting when a transaction starts go into it
together, and each caller learns the outcome of the transaction its batch was in. A
batch is never split across transactions, so a read_committed consumer sees all of it
or none of it.

The outcomes a caller can get (`Outcome`):
- committed: every record is written, once;
- aborted: nothing of it is or will become visible (the transaction was aborted, or
  never began);
- unknown: the commit was sent but its answer did not come before the deadline. The
  transaction may yet commit; the writer resolves it at once (a new producer of the
  same transactional.id, whose init completes a commit that reached the coordinator
  and aborts anything else), tried again until the broker answers, and starts no other
  before; `settled()` says when. Then a read of the topic is the truth: records that
  must say whether a batch was written (an idempotency key) go in the same
  transaction, so a retry can find out.

A caller that stops waiting cancels its future: a batch not yet in a transaction is
then never written (its outcome is a sure "not written"); one already in a
transaction cannot be taken back.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from txmon.kafka.produce import ClientFactory

__all__ = ["Outcome", "PlainSteps", "Record", "StepFailed", "Steps", "TransactionalWriter",
           "transactional_id"]

log = logging.getLogger(__name__)

Records = Mapping[str, Sequence[tuple[bytes, bytes]]]
#: One record of a step: (topic, key, value).
Record = tuple[str, bytes, bytes | None]

#: Batches grouped into one transaction at most: bounds the records a failed
#: transaction takes down with it and the time before its callers hear.
GROUP_RECORDS = 200_000
#: Errors that mean another producer now holds this transactional.id.
FENCED = frozenset({KafkaError._FENCED,  # noqa: SLF001 (librdkafka's local codes)
                    KafkaError.PRODUCER_FENCED})
#: How long a record waiting for room in the local queue sleeps between tries.
ROOM_WAIT_S = 0.005
#: Pause between tries to resolve a transaction while the broker cannot answer.
RESOLVE_RETRY_S = 1.0
#: How long past its own timeout a transactional call may take before its client is
#: taken for hung (Steps._bounded).
HUNG_MARGIN_S = 5.0
#: librdkafka's transaction.timeout.ms when the configuration does not say.
DEFAULT_TRANSACTION_TIMEOUT_MS = 60_000


def transactional_id(prefix: str) -> str:
    """A process's own id: two API processes must never share one (each would fence
    the other's transactions). A crashed process's open transaction is aborted by the
    broker after `transaction.timeout.ms`."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Outcome:
    """What happened to a batch: `committed`, `aborted` or `unknown`, and why not."""

    state: str
    records: int
    error: str | None = None

    @property
    def committed(self) -> bool:
        return self.state == "committed"


@dataclass
class _Batch:
    records: Records
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)

    @property
    def size(self) -> int:
        return sum(len(pairs) for pairs in self.records.values())


class TransactionalWriter:
    """One transactional producer, one writer thread, batches from any thread.

    `config` is a producer configuration with a `transactional.id`; `commit_timeout_s`
    bounds how long a caller waits for its transaction's outcome."""

    def __init__(self, config: Mapping[str, object], client: ClientFactory = Producer,
                 commit_timeout_s: float = 30.0, init_timeout_s: float = 60.0):
        if "transactional.id" not in config:
            raise ValueError("a transactional writer needs a transactional.id")
        self.config, self.client = dict(config), client
        self.commit_timeout_s, self.init_timeout_s = commit_timeout_s, init_timeout_s
        self._queue: queue.Queue[_Batch | None] = queue.Queue()
        self._producer = self._new_producer()
        self._unresolved = False
        self._fenced: str | None = None
        self._closing = threading.Event()
        self._began = time.monotonic()
        self._settled: list[concurrent.futures.Future] = []
        self._settled_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="kafka-transactions",
                                        daemon=True)
        self._thread.start()

    def submit(self, records: Records) -> concurrent.futures.Future:
        """The batch's future `Outcome`, once its transaction is over."""
        batch = _Batch(records)
        self._queue.put(batch)
        return batch.future

    def settled(self) -> concurrent.futures.Future:
        """Done once no transaction's outcome is unknown (at once if none is): from then
        on, what a read_committed reader finds of a batch is all there will be."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._settled_lock:
            if self._unresolved:
                self._settled.append(future)
                return future
        future.set_result(None)
        return future

    def close(self, timeout: float = 10.0) -> None:
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout)
        with contextlib.suppress(KafkaException):  # a fenced producer has nothing to send
            self._producer.flush(timeout)

    def _new_producer(self):
        producer = self.client(self.config)
        producer.init_transactions(self.init_timeout_s)
        return producer

    def _run(self) -> None:
        while (group := self._take()) is not None:
            outcome = self._write(group)
            for batch in group:
                batch.future.set_result(Outcome(outcome.state, batch.size, outcome.error))
            self._settle()

    def _take(self) -> list[_Batch] | None:
        """The next group of batches whose callers still wait (None: closed)."""
        group: list[_Batch] = []
        records = 0
        while records < GROUP_RECORDS:
            try:
                batch = self._queue.get_nowait() if group else self._queue.get()
            except queue.Empty:
                break
            if batch is None:
                if group:
                    self._queue.put(None)  # stop after this group
                    break
                return None
            if batch.future.set_running_or_notify_cancel():
                group.append(batch)
                records += batch.size
        return group

    def _settle(self) -> None:
        """Resolves an unknown outcome now rather than at the next batch: a caller may
        be waiting on `settled` to learn what became of its batch."""
        while self._unresolved and not self._fenced and not self._closing.is_set():
            if not self._resolve():
                self._closing.wait(RESOLVE_RETRY_S)
        if not self._unresolved or self._fenced:
            with self._settled_lock:
                waiting, self._settled = self._settled, []
            for future in waiting:
                future.set_result(None)

    def _write(self, group: list[_Batch]) -> Outcome:
        total = sum(b.size for b in group)
        if self._fenced:
            return Outcome("aborted", total, f"fenced by a newer writer: {self._fenced}")
        if self._unresolved and not self._resolve():
            return Outcome("aborted", total, "an earlier transaction is still unresolved")
        try:
            self._producer.begin_transaction()
            self._began = time.monotonic()
            for batch in group:
                self._produce(batch.records)
        except KafkaException as exc:
            return Outcome("aborted", total, self._abort(exc.args[0].str()))
        except BufferError as exc:
            return Outcome("aborted", total, self._abort(f"local queue full: {exc}"))
        return self._commit(total)

    def _produce(self, records: Records) -> None:
        produce, poll = self._producer.produce, self._producer.poll
        deadline = time.monotonic() + self.commit_timeout_s
        for topic, pairs in records.items():
            for key, value in pairs:
                while True:
                    try:
                        produce(topic, value, key)
                        break
                    except BufferError:
                        if time.monotonic() > deadline:
                            raise
                        poll(ROOM_WAIT_S)

    def _commit(self, total: int) -> Outcome:
        try:
            self._producer.commit_transaction(self.commit_timeout_s)
            return Outcome("committed", total)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
        if err.txn_requires_abort():
            return Outcome("aborted", total, self._abort(err.str()))
        if err.fatal():
            # Fenced by another writer of the id: aborted. Else a new producer settles
            # it, and the commit may have reached the coordinator first: unknown.
            state = "unknown" if self._after_fatal(err) else "aborted"
            return Outcome(state, total, err.str())
        if err.retriable():  # librdkafka's advice: send the commit again
            try:
                self._producer.commit_transaction(self.commit_timeout_s)
                return Outcome("committed", total)
            except KafkaException as again:
                err = again.args[0]
        self._unresolved = True
        return Outcome("unknown", total, err.str())

    def _resolve(self) -> bool:
        """Settles a transaction whose outcome is unknown, or whose abort failed: a new
        producer of the same id, whose init completes a commit that reached the
        coordinator and aborts anything else. False while the broker cannot say."""
        return self._replace()

    def _abort(self, reason: str) -> str:
        """Aborts the open transaction, then starts afresh with a new producer: after a
        record the broker refused, librdkafka's next transaction fails on the gap in
        its sequence numbers ("skipped sequence numbers"), taking the next caller's
        batch with it. Returns `reason`, the caller's answer."""
        try:
            self._producer.abort_transaction(self.commit_timeout_s)
        except KafkaException as again:
            log.warning("abort failed: %s", again.args[0].str())
            if not again.args[0].fatal() or not self._after_fatal(again.args[0]):
                self._unresolved = True
            return reason
        self._replace()
        return reason

    def _after_fatal(self, err: KafkaError) -> bool:
        """A new producer, unless this one was fenced by another: then another process
        holds its transactional.id, and taking it back would fence that one in turn."""
        if err.code() in FENCED and not outlived(self._began, self.config):
            self._fenced = err.str()
            return False
        return self._replace()

    def _replace(self) -> bool:
        """A fresh producer with the same transactional.id: its init fences this one
        and aborts whatever transaction it left open."""
        with contextlib.suppress(KafkaException, RuntimeError):
            self._producer.purge()  # the old one's retries would only be fenced
        try:
            self._producer = self._new_producer()
            self._unresolved = False
            return True
        except KafkaException as exc:
            log.error("cannot start a transactional producer: %s", exc.args[0].str())
            self._unresolved = True
            return False


def outlived(began: float, config: Mapping[str, object]) -> bool:
    """Whether a transaction begun at `began` (monotonic) outlived its timeout: the
    coordinator then aborted it and bumped the producer's epoch, and the producer's next
    call reports it fenced "by a newer instance", though it was fenced by its own
    slowness (a broker away, a record stuck that long). Such a producer may take its id
    back; one fenced sooner was fenced by another producer of its id."""
    timeout_ms = float(config.get("transaction.timeout.ms", DEFAULT_TRANSACTION_TIMEOUT_MS))
    return time.monotonic() - began >= timeout_ms / 1000


class StepFailed(RuntimeError):
    """No transactional producer can be started: the loop must stop."""


class Steps:
    """A consume-process-produce loop's writes, one transaction a step: the step's
    records and its input offsets (`send_offsets_to_transaction`, with the consumer
    group's metadata: exactly-once v2) commit together or not at all.

    `config` has a transactional.id stable for the input it serves: the producer's
    `init_transactions` (here) fences an older producer of that id, a zombie, and
    settles what it left open before this one reads anything."""

    def __init__(self, config: Mapping[str, object], consumer, client: ClientFactory = Producer,
                 stop: threading.Event | None = None):
        self.config, self.consumer, self.client = dict(config), consumer, client
        self.timeout_s = float(self.config.get("transaction.timeout.ms",
                                               DEFAULT_TRANSACTION_TIMEOUT_MS)) / 1000
        self.stop = stop or threading.Event()
        #: The producer was left inside a call that did not return (`_bounded`).
        self.hung = False
        self.producer = self._new_producer()

    def _new_producer(self):
        """A producer whose init succeeded, tried with new clients until the broker
        answers or the loop stops."""
        while True:
            producer, self.hung = self.client(self.config), False
            try:
                self._again(lambda p=producer: p.init_transactions(self.timeout_s))
                return producer
            except KafkaException as exc:
                if not (exc.args[0].retriable() or self.hung) or self.stop.is_set():
                    raise
                log.warning("no transactional producer yet: %s", exc.args[0].str())

    def _again(self, call):
        """`call()`, made again while its error is retriable (librdkafka's advice: the
        broker is away or busy, the same call will do), for up to twice the transaction
        timeout: a client whose coordinator connection did not come back after a broker
        restart times out for good, and a new one is the cure. Never again on a client
        left hung."""
        deadline = time.monotonic() + 2 * self.timeout_s
        while True:
            try:
                return self._bounded(call)
            except KafkaException as exc:
                if self.hung or not exc.args[0].retriable() or self.stop.is_set() \
                        or time.monotonic() > deadline:
                    raise
                log.warning("transaction call failed, trying again: %s", exc.args[0].str())

    def _bounded(self, call):
        """`call()` in a thread of its own, given up on HUNG_MARGIN_S after its own
        timeout: librdkafka's send_offsets_to_transaction can block long past its
        timeout while the group coordinator is away (librdkafka#5456, #5511; 10 minutes
        after a broker restart here), and a merge blocked that long stops every minute.
        The client is then abandoned to its call (`hung`): a new producer of the id
        fences it, so whatever it sends when it wakes is refused."""
        done: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(call())
            except BaseException as exc:  # noqa: BLE001 (handed to the caller)
                done.set_exception(exc)

        threading.Thread(target=run, name="kafka-transaction-call", daemon=True).start()
        try:
            return done.result(self.timeout_s + HUNG_MARGIN_S)
        except concurrent.futures.TimeoutError:
            self.hung = True
            raise KafkaException(KafkaError(
                KafkaError._TIMED_OUT,  # noqa: SLF001
                f"no answer {self.timeout_s + HUNG_MARGIN_S:.0f} s into a call with a "
                f"{self.timeout_s:.0f} s timeout: client abandoned")) from None

    def commit(self, outputs: Sequence[Record], states: Sequence[Record],
               offsets: Sequence[TopicPartition]) -> bool:
        """Writes `outputs` and then `states` (topic, key, value) and commits `offsets`:
        True once committed. False when it may not have been: aborted, or its outcome unknown (a
        commit unanswered past the transaction's timeout, a producer fenced meanwhile).
        A new producer then settles it, so the caller's state read back from Kafka,
        read_committed, is the truth either way (the generation in the offsets keeps
        a member that lost its partitions from committing). StepFailed when no new
        producer can start."""
        producer = self.producer
        try:
            producer.begin_transaction()
            for topic, key, value in (*outputs, *states):
                while True:
                    try:
                        producer.produce(topic, value, key)
                        break
                    except BufferError:
                        producer.poll(ROOM_WAIT_S)
            metadata = self.consumer.consumer_group_metadata()
            self._again(lambda: producer.send_offsets_to_transaction(
                list(offsets), metadata, self.timeout_s))
            self._again(lambda: producer.commit_transaction(self.timeout_s))
            return True
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            log.warning("transaction not committed: %s", err.str())
            if not err.fatal() and not self.hung:
                with contextlib.suppress(KafkaException):
                    self._again(lambda: producer.abort_transaction(self.timeout_s))
        self._renew()
        return False

    def _renew(self) -> None:
        """A new producer of the id: its init settles whatever the old one left, and it
        starts with fresh sequence numbers (after a refused record, librdkafka's next
        transaction fails on the gap)."""
        if not self.hung:  # a hung client is left alone: its call still runs
            with contextlib.suppress(KafkaException, RuntimeError):
                self.producer.purge()
        try:
            self.producer = self._new_producer()
        except KafkaException as exc:
            raise StepFailed(f"no transactional producer: {exc.args[0].str()}") from exc

    def close(self, timeout: float = 10.0) -> None:
        if not self.hung:
            with contextlib.suppress(KafkaException):
                self.producer.flush(timeout)


class PlainSteps:
    """Steps without transactions (TXMON_PROCESSING_GUARANTEE=at_least_once): the
    step's outputs are acknowledged first, then its states, then the offsets are
    committed. A crash between the two can only write a
    step's outputs again, with the same keys and content; what it saves is the
    transaction's round trips (bench/README.md compares the two)."""

    def __init__(self, config: Mapping[str, object], consumer, client: ClientFactory = Producer,
                 timeout_s: float = 30.0):
        self.consumer, self.timeout_s = consumer, timeout_s
        self.producer = client(dict(config))

    def commit(self, outputs: Sequence[Record], states: Sequence[Record],
               offsets: Sequence[TopicPartition]) -> bool:
        """True once every record is acknowledged, the states after the outputs; False
        when the broker refused or did not acknowledge one."""
        if not (self._written(outputs) and self._written(states)):
            return False
        try:
            if offsets:
                self.consumer.commit(offsets=list(offsets), asynchronous=False)
        except KafkaException as exc:  # informational: the state holds the offset
            log.warning("offset commit failed: %s", exc.args[0].str())
        return True

    def _written(self, records) -> bool:
        failed: list[KafkaError] = []

        def report(err, _msg) -> None:
            if err is not None:
                failed.append(err)

        for topic, key, value in records:
            while True:
                try:
                    self.producer.produce(topic, value, key, on_delivery=report)
                    break
                except BufferError:
                    self.producer.poll(ROOM_WAIT_S)
        unsent = self.producer.flush(self.timeout_s)
        if failed or unsent:
            log.warning("step not written: %s", failed[0].str() if failed else
                        f"{unsent} records unacknowledged after {self.timeout_s:.0f} s")
            return False
        return True

    def close(self, timeout: float = 10.0) -> None:
        self.producer.flush(timeout)
