"""Malformed settings: one line naming the variable, never a traceback."""

from __future__ import annotations

import os
import subprocess

import pytest
from support.processor import TXMON

from txmon.config import env_float, env_int
from txmon.errors import UserError


def test_numbers_from_the_environment(monkeypatch):
    monkeypatch.setenv("TXMON_X", "12")
    assert env_int("TXMON_X", 1) == 12 and env_float("TXMON_X", 1.0) == 12.0
    monkeypatch.setenv("TXMON_X", "")
    assert env_int("TXMON_X", 7) == 7
    monkeypatch.setenv("TXMON_X", "1.5")
    assert env_float("TXMON_X", 0.0) == 1.5
    with pytest.raises(UserError, match="TXMON_X='1.5' is not an integer"):
        env_int("TXMON_X", 1)
    monkeypatch.setenv("TXMON_X", "ten")
    with pytest.raises(UserError, match="TXMON_X='ten' is not a number"):
        env_float("TXMON_X", 1.0)


@pytest.mark.parametrize("argv, variable", [
    (["process"], "TXMON_PREFETCH_MESSAGES"),  # read when the worker starts
    (["api", "--help"], "TXMON_API_PORT"),  # read for a flag's default
])
def test_the_cli_names_a_malformed_variable(argv, variable):
    env = {**os.environ, variable: "lots", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    proc = subprocess.run([TXMON, *argv], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"{variable}='lots' is not an integer" in proc.stderr
    assert "Traceback" not in proc.stderr
