"""Every module of every package imports: a subcommand's module is loaded only when the
subcommand runs, so a stale import would otherwise surface as a user's traceback."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ("txmon", "producer", "processor", "exporter", "evaluation", "demo")


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
