"""Topics are replicated for the cluster they are created on, unless the settings say."""

import pytest

from txmon.errors import UserError
from txmon.kafka.admin import TopicSpec, replicated
from txmon.settings import TopicLayout

SPEC = TopicSpec("t", 3, None, {"cleanup.policy": "compact"})


@pytest.mark.parametrize(("brokers", "copies", "in_sync"), [(1, 1, 1), (2, 1, 1), (3, 3, 2),
                                                              (5, 3, 2)])
def test_copies_follow_the_cluster(brokers, copies, in_sync):
    got = replicated(SPEC, brokers, TopicLayout())
    assert (got.replication, got.config["min.insync.replicas"]) == (copies, str(in_sync))
    assert got.config["cleanup.policy"] == "compact"


def test_the_settings_win_and_impossible_ones_say_why():
    layout = TopicLayout(replication=2, min_insync=2)
    got = replicated(SPEC, 3, layout)
    assert (got.replication, got.config["min.insync.replicas"]) == (2, "2")
    with pytest.raises(UserError, match="replication 3 needs 3 brokers"):
        replicated(SPEC, 1, TopicLayout(replication=3))
    with pytest.raises(UserError, match="min.insync.replicas 3 > replication 2"):
        replicated(SPEC, 3, TopicLayout(replication=2, min_insync=3))
