"""The Faust worker: the only module of the processor that touches Faust.

Faust hosts the process (its lifecycle, signals, the "Ready" line the demo waits for);
both stages are confluent-kafka loops in threads of their own, each hosted by a
LoopService:
- stage 1, counting (processor.counting): batches of transactions per source partition
  into partial windows;
- stage 2, merging (processor.merging): the partials into one scored minute and its
  alerts, each step one Kafka transaction.

Faust's windowed tables, agents and exactly-once mode are not used: windows close on our
own watermark (event time across partitions), which Faust's wall-clock windows cannot,
and Faust cannot read its input read_committed nor write topics it does not read inside
its transactions (docs/decisions/0007).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Protocol

import faust

from processor.counting import Counting
from processor.merging import Merging
from txmon.contracts import Topics
from txmon.settings import KafkaSettings, ProcessorSettings

log = logging.getLogger(__name__)


class Loop(Protocol):
    """A stage's loop: `run` until `stop_event` is set."""

    stop_event: threading.Event

    def run(self) -> None: ...


class LoopService(faust.Service):
    """Hosts a stage's loop (a thread) inside the Faust worker, so one process runs both
    stages and stops them together."""

    def __init__(self, loop_: Loop, name: str, **kwargs):
        super().__init__(**kwargs)
        self.stage = loop_
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self.stage.run()
        except BaseException:
            # A stage without its state would lose or double-count: die, and let the
            # restart resume from the stored state.
            log.critical("%s thread failed: stopping the worker", self.thread.name,
                         exc_info=True)
            logging.shutdown()
            os._exit(1)

    async def on_start(self) -> None:
        self.thread.start()

    async def on_stop(self) -> None:
        self.stage.stop_event.set()
        await asyncio.get_running_loop().run_in_executor(None, self.thread.join, 30)


def create_app(cfg: ProcessorSettings, settings: KafkaSettings) -> faust.App:
    """The host: no agents, tables or topics of its own."""
    return faust.App(
        f"{cfg.app_id}-host",
        broker=settings.faust_url(),
        broker_credentials=settings.faust_credentials(),
        store="memory://",
        datadir=cfg.data_dir,
        web_enabled=False,
        producer_acks=-1,
    )


def create_worker(cfg: ProcessorSettings, settings: KafkaSettings, names: Topics,
                  source_partitions: int, loglevel: str = "INFO") -> faust.Worker:
    app = create_app(cfg, settings)
    counting = LoopService(Counting(cfg, settings, names), "counting", loop=None)
    merging = LoopService(Merging(cfg, settings, names, source_partitions), "merging",
                          loop=None)
    return faust.Worker(app, counting, merging, loglevel=loglevel)
