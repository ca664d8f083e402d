"""Saved state that survives an upgrade: each record says which schema wrote it.

Stage 1's per-partition windows (the compacted partition-state topic) and the merge
stage's minute state (its Faust changelog) outlive the worker that wrote them: a rolling
upgrade starts the new version on the old version's records, and an open incident must
stay open there and later resolve. So every record carries `schema`, and a reader brings
an older record up to date through `migrations` (one step per version, on plain JSON
values, where renaming or reshaping a field is a dict operation) and then decoded as
JSON again, with exactly the rules a current record is decoded with. A record from a
*newer* schema is refused, loudly: a worker rolled back must not misread state it does
not understand, and silently dropping it would double or lose counts.

Records written before versions existed have no `schema` field: they are version 1.
Version 2 adds the field and changes nothing else.

To change a stored shape: bump `CURRENT`, add a migration from the
previous version, and add a saved record of the previous version under
tests/unit/fixtures/state/ to the upgrade test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import msgspec

__all__ = ["CURRENT", "StateSchema", "UnknownStateSchema"]

#: The version this code writes.
CURRENT = 2

T = TypeVar("T")
Migration = Callable[[dict], dict]


class UnknownStateSchema(ValueError):
    """A record written by a newer worker than this one."""


class _Version(msgspec.Struct):
    schema: int = 1


_version = msgspec.json.Decoder(_Version)


def _add_version(record: dict) -> dict:
    return {**record, "schema": 2}


@dataclass(frozen=True)
class StateSchema(Generic[T]):
    """Reads one kind of state record, whichever version wrote it."""

    kind: str
    type: type[T]
    migrations: dict[int, Migration] = field(
        default_factory=lambda: {1: _add_version})
    current: int = CURRENT

    def __post_init__(self) -> None:
        object.__setattr__(self, "_typed", msgspec.json.Decoder(self.type))

    def decode(self, raw: bytes) -> T:
        version = self.version_of(raw)
        if version == self.current:
            return self._typed.decode(raw)
        if version > self.current:
            raise UnknownStateSchema(
                f"{self.kind} state of schema {version}, newer than this worker's "
                f"{self.current}: run the version that wrote it (or newer)")
        record = msgspec.json.decode(raw)
        for step in range(version, self.current):
            record = self.migrations[step](record)
        return self._typed.decode(msgspec.json.encode(record))

    @staticmethod
    def version_of(raw: bytes) -> int:
        """The record's schema; 1 for records written before versions existed."""
        return _version.decode(raw).schema
