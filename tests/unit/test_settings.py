"""The settings model: one parse per variable, one-line errors naming it, flags over the
environment, and the README's table generated from it."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from pathlib import Path

import pytest
from support.processor import TXMON

from txmon.contracts import topics
from txmon.errors import UserError
from txmon.settings import (
    ApiSettings,
    BrokerSettings,
    DemoSettings,
    KafkaSettings,
    Paths,
    ProcessorSettings,
    export,
    flag_help,
    groups,
    load,
    readme_block,
    render_readme,
    variable,
    with_flags,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("txmon", "producer", "processor", "exporter", "evaluation", "demo")


def test_the_readme_table_is_the_model():
    text = (ROOT / "README.md").read_text()
    assert readme_block(text), "README.md lost its settings:begin/end markers"
    assert text == render_readme(text), (
        "README.md's configuration table differs from txmon/settings.py: "
        "run `python -m txmon.settings --update README.md`")


def test_each_variable_is_declared_once():
    names = [variable(f) for g in groups() for f in g.model_fields.values() if variable(f)]
    assert len(names) == len(set(names))


def test_only_the_settings_module_reads_our_variables():
    # Presence, not value: the demo starts its own broker unless one is given.
    allowed = {("demo/stack.py", 'os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None')}
    read = re.compile(r"""(environ\.get|getenv|environ\[)\(?\s*["'](TXMON_|KAFKA_|DEMO_|"""
                      r"""SLACK_|GRAFANA_)""")
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            rel = str(path.relative_to(ROOT))
            for line in path.read_text().splitlines():
                if read.search(line) and (rel, line.strip().removeprefix("return ")) not in allowed:
                    found.append(f"{rel}: {line.strip()}")
    assert not found


def test_defaults_without_environment():
    cfg = load(ProcessorSettings, {"TXMON_STATE_DIR": "/st"})
    assert cfg.lateness_s == 10.0 and cfg.metrics_port == 9109
    assert cfg.model_path == "/st/model.joblib" and cfg.data_dir == "/st/processor"
    assert load(BrokerSettings, {"TXMON_STATE_DIR": "/st"}).data_dir == Path("/st/kafka")
    assert load(Paths, {"XDG_STATE_HOME": "/x"}).state_dir == Path("/x/txmon")


def test_values_are_parsed_once_and_empty_means_unset():
    cfg = load(ProcessorSettings, {"TXMON_BATCH_SIZE": "12", "TXMON_TICK_SECONDS": "1.5",
                                   "TXMON_APP_ID": "", "TXMON_PROCESSOR_METRICS_PORT": "0"})
    assert (cfg.batch_size, cfg.tick_s, cfg.app_id, cfg.metrics_port) == (
        12, 1.5, "txmon-processor", 0)
    assert load(DemoSettings, {"DEMO_RATE": "5"}).rate == 5.0
    assert load(DemoSettings, {}).rate is None


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "On", " on "])
def test_true(raw):
    assert load(DemoSettings, {"DEMO_FOREVER": raw, "DEMO_MONITORING": raw}).forever is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "OFF"])
def test_false(raw):
    cfg = load(DemoSettings, {"DEMO_FOREVER": raw, "DEMO_MONITORING": raw})
    assert cfg.forever is False and cfg.monitoring is False


@pytest.mark.parametrize("group, var, raw, message", [
    (ProcessorSettings, "TXMON_BATCH_SIZE", "1.5", "TXMON_BATCH_SIZE='1.5' is not an integer"),
    (ProcessorSettings, "TXMON_TICK_SECONDS", "ten", "TXMON_TICK_SECONDS='ten' is not a number"),
    (DemoSettings, "DEMO_RATE", "abc", "DEMO_RATE='abc' is not a number"),
    (DemoSettings, "DEMO_FOREVER", "maybe", "DEMO_FOREVER='maybe' is not a boolean"),
    (ApiSettings, "TXMON_API_PORT", "70000", "TXMON_API_PORT='70000' is not a port (0-65535)"),
    (ApiSettings, "TXMON_API_PORT", "-1", "TXMON_API_PORT='-1' is not a port"),
    (ApiSettings, "TXMON_API_PORT", "http", "TXMON_API_PORT='http' is not an integer"),
    (BrokerSettings, "TXMON_KAFKA_JVM_FLAGS", '"-Xss1m', "TXMON_KAFKA_JVM_FLAGS='\"-Xss1m' is "
     "not shell words (a quote is not closed)"),
])
def test_a_bad_value_is_one_line_naming_the_variable(group, var, raw, message):
    with pytest.raises(UserError) as err:
        load(group, {var: raw})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_flags_override_the_environment():
    from processor import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    env = {"TXMON_ALLOWED_LATENESS_SECONDS": "30", "TXMON_IDLE_TIMEOUT_SECONDS": "20"}
    args = parser.parse_args(["process", "--lateness", "5"])
    cfg = with_flags(load(ProcessorSettings, env), args)
    assert (cfg.lateness_s, cfg.idle_timeout_s) == (5.0, 20.0)


def test_flags_reach_processes_started_later_through_the_environment():
    """`txmon api --workers N`: uvicorn's workers load ApiSettings from the environment."""
    from api import cli

    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["api", "--port", "8123", "--workers", "3", "--no-access-log",
                              "--max-batch-bytes", "1000"])
    cfg = with_flags(load(ApiSettings, {"TXMON_API_PORT": "9000", "TXMON_API_ACCESS_LOG": "1",
                                        "TXMON_API_MAX_BODY_BYTES": "77"}), args)
    env: dict[str, str] = {"TXMON_API_TOKEN": "kept"}
    export(cfg, env)
    assert load(ApiSettings, env) == cfg.model_copy(update={"token": "kept"})
    assert (env["TXMON_API_PORT"], env["TXMON_API_WORKERS"], env["TXMON_API_ACCESS_LOG"],
            env["TXMON_API_MAX_BATCH_BYTES"], env["TXMON_API_MAX_BODY_BYTES"]) == (
        "8123", "3", "0", "1000", "77")


def test_flag_help_names_variable_and_default():
    assert flag_help(ApiSettings, "port", "port") == "port (TXMON_API_PORT, default 8000)"


def test_topics_follow_the_environment_each_call(monkeypatch):
    monkeypatch.setenv("TXMON_TOPIC_ALERTS", "alerts-2")
    assert topics().alerts == "alerts-2"
    monkeypatch.delenv("TXMON_TOPIC_ALERTS")
    assert topics().alerts == "alerts"


@pytest.mark.parametrize("argv, variable, message", [
    (["process"], "TXMON_PREFETCH_MESSAGES", "is not an integer"),  # read when the worker starts
    (["api"], "TXMON_API_PORT", "is not an integer"),
    (["demo", "up"], "DEMO_RATE", "is not a number"),  # before anything starts
])
def test_the_cli_names_a_malformed_variable(argv, variable, message, tmp_path):
    env = {**os.environ, variable: "lots", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
           "TXMON_STATE_DIR": str(tmp_path)}
    proc = subprocess.run([TXMON, *argv], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{variable}='lots' {message}" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    if argv[0] == "demo":
        assert not any(tmp_path.iterdir()), "the demo started something"


def test_secrets_are_masked_in_repr_and_str_but_kept_for_the_clients():
    kafka = KafkaSettings.from_env({"KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "pw-1"})
    kafka = kafka.model_copy(update={"extra": {"ssl.key.password": "pw-2", "linger.ms": "5"}})
    api = ApiSettings.from_env({"TXMON_API_TOKEN": "tok-3"})
    shown = " ".join([repr(kafka), str(kafka), repr(api), f"{api}"])
    assert not {"pw-1", "pw-2", "tok-3"} & set(shown.replace("'", " ").split()), shown
    assert "sasl_password='***'" in repr(kafka) and "token='***'" in repr(api)
    assert "'linger.ms': '5'" in repr(kafka) and "sasl_username='svc'" in repr(kafka)
    assert kafka.confluent()["sasl.password"] == "pw-1"
    assert "token=None" in repr(ApiSettings.from_env({}))
