"""What processor/app.py relies on Faust for, checked without a broker: a host for the
stages' loops, with coroutine start and stop hooks, and nothing of its own to consume
(no agent, table or topic a worker would create or wait for)."""

from __future__ import annotations

import inspect

import faust
import pytest

from processor.app import LoopService, create_app
from processor.merging import merge_topics, state_topic
from txmon.settings import KafkaSettings, ProcessorSettings


@pytest.fixture
def app(tmp_path) -> faust.App:
    cfg = ProcessorSettings(app_id="contract", model_path=None, data_dir=str(tmp_path))
    return create_app(cfg, KafkaSettings(bootstrap="127.0.0.1:1"))


def test_the_host_has_nothing_to_consume(app):
    assert not list(app.agents) and not list(app.tables)


def test_a_loop_service_is_a_faust_service():
    assert issubclass(LoopService, faust.Service)
    for hook in ("on_start", "on_stop"):
        assert inspect.iscoroutinefunction(getattr(faust.Service, hook))


def test_the_merge_state_keeps_the_name_of_faust_s_changelog():
    """A worker of this version carries on from the state the Faust table left."""
    cfg = ProcessorSettings(app_id="contract", model_path=None)
    assert state_topic(cfg) == "contract-merge-minutes-changelog"
    assert [s.name for s in merge_topics(cfg)] == [state_topic(cfg)]
