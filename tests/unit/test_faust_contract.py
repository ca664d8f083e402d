"""What processor/app.py relies on Faust for, checked without a broker.

A Faust upgrade that changes any of it fails here rather than in a worker's recovery
(a JSON codec on our msgspec bytes) or in a merge stage stalled on a topic it expects
under another name (processor.app.faust_topics creates them up front).
"""

from __future__ import annotations

import inspect

import faust
import msgspec
import pytest

from processor.app import CountingService, StateTable, create_app, faust_topics
from txmon.contracts import Topics
from txmon.settings import KafkaSettings, ProcessorSettings

NOT_JSON = b"\xff\x00{not json"


@pytest.fixture
def app(tmp_path) -> faust.App:
    cfg = ProcessorSettings(app_id="contract", model_path=None, data_dir=str(tmp_path))
    return create_app(cfg, KafkaSettings(bootstrap="127.0.0.1:1"), Topics(), 1)


def test_bytes_typed_table_stores_and_logs_raw_bytes(app):
    table = app.tables["minutes"]
    topic = table.changelog_topic
    assert (table.key_serializer, table.value_serializer) == ("raw", "raw")
    assert (topic.key_serializer, topic.value_serializer) == ("raw", "raw")
    # What recovery does with a changelog record: our bytes back, not a JSON error.
    assert app.serializers.loads_key(topic.key_type, NOT_JSON,
                                     serializer=topic.key_serializer) == NOT_JSON
    assert app.serializers.loads_value(topic.value_type, NOT_JSON,
                                       serializer=topic.value_serializer) == NOT_JSON


def test_precreated_topics_are_the_ones_faust_uses(app):
    cfg = ProcessorSettings(app_id="contract", model_path=None)
    names = {spec.name for spec in faust_topics(cfg)}
    assert app.tables["minutes"].changelog_topic.get_topic_name() in names
    assert app._leader_assignor._leader_topic_name in names
    assert len(names) == 2


def test_state_table_uses_public_table_api(app):
    table = app.tables["minutes"]
    table.data[b"minutes"] = b'{"n": 1}'
    assert StateTable(table, msgspec.json.Decoder(dict)).load(b"minutes") == {"n": 1}
    params = list(inspect.signature(table.send_changelog).parameters)
    assert params[:3] == ["partition", "key", "value"]


def test_counting_service_is_a_faust_service():
    assert issubclass(CountingService, faust.Service)
    for hook in ("on_start", "on_stop"):
        assert inspect.iscoroutinefunction(getattr(faust.Service, hook))
