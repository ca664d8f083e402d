"""Every module of every package imports: a subcommand's module is loaded only when the
subcommand runs, so a stale import would otherwise surface as a user's traceback."""

from __future__ import annotations

import importlib
import pkgutil
import tomllib
from pathlib import Path

import pytest

#: The packages the layers contract names: one list, in pyproject.toml.
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
PACKAGES = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["root_packages"]


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
    return names


@pytest.mark.parametrize("name", modules())
def test_module_imports(name: str) -> None:
    importlib.import_module(name)
