"""Replaying change files over full-load files: a table's current rows (no I/O here).

Change files hold one row per change in the DMS layout: ``Op`` (``I`` insert, ``U`` update,
``D`` delete, ``T`` truncate), ``_commit_ts``, ``_position``, ``_change`` (the change's order
within its apply), ``_unchanged`` (columns an update did not carry) and the row's values.
Replaying them in order over the full-load rows gives the source table as of the last change:

* memory holds the changed keys only: the change files are reduced to each key's final state
  (a row, deleted, or updates to apply to the full-load row), then the full-load rows stream
  past it;
* replay is idempotent, as apply is: an insert or full update is an upsert, a delete removes
  whatever is there, so changes written twice (a restarted task) converge.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from replikit.errors import DataError

__all__ = ["META", "OPS", "Replay"]

#: the change-file columns before the row's values
META = ("Op", "_commit_ts", "_position", "_change", "_unchanged")
OPS = {"insert": "I", "update": "U", "delete": "D", "truncate": "T"}

Key = tuple[Any, ...]
_DELETED = "deleted"


class Replay:
    """The final state per key of a table's changes (see the module docstring)."""

    def __init__(self, table: str, columns: Sequence[str], key: Sequence[str]) -> None:
        if not key:
            raise DataError(
                f"table {table} has change files but no primary key: its changes cannot be "
                "replayed (read the change files themselves, e.g. with DuckDB)",
                table=table,
            )
        self.table = table
        self.columns = tuple(columns)
        self.key = tuple(key)
        self.truncated = False
        # key -> a full row (dict), _DELETED, or a list of partial updates (dicts)
        self.state: dict[Key, Any] = {}

    def _key(self, image: dict[str, Any]) -> Key:
        return tuple(image.get(k) for k in self.key)

    def add(self, names: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Apply change rows (in their order) to the state."""
        at = {n: i for i, n in enumerate(names)}
        for row in rows:
            op = row[at["Op"]]
            image = {c: row[at[c]] for c in self.columns if c in at}
            if op == "T":
                self.truncated = True
                self.state.clear()
                continue
            key = self._key(image)
            if op == "D":
                self.state[key] = _DELETED
            elif op == "I":
                self.state[key] = image
            elif op == "U":
                unchanged = set(row[at["_unchanged"]] or ()) if "_unchanged" in at else set()
                self._update(
                    key, {c: v for c, v in image.items() if c not in unchanged}, full=not unchanged
                )
            else:
                raise DataError(f"unknown change Op {op!r}", table=self.table)

    def _update(self, key: Key, after: dict[str, Any], *, full: bool) -> None:
        now = self.state.get(key)
        if full:
            self.state[key] = after
        elif isinstance(now, dict):
            now.update(after)
        elif now is _DELETED or (now is None and self.truncated):
            return  # the row is gone: an update of nothing
        elif isinstance(now, list):
            now.append(after)
        else:
            self.state[key] = [after]

    def rows(
        self, base: Iterable[tuple[Sequence[str], Sequence[Sequence[Any]]]], batch_size: int
    ) -> Iterator[list[list[Any]]]:
        """The table's rows (in :attr:`columns` order): the full-load ``base`` batches with
        the changes applied, then the rows the changes inserted."""
        out: list[list[Any]] = []
        if not self.truncated:
            for names, rows in base:
                at = [list(names).index(c) for c in self.columns]
                key_at = [list(names).index(k) for k in self.key]
                for row in rows:
                    now = self.state.get(tuple(row[i] for i in key_at))
                    if now is None:
                        out.append([row[i] for i in at])
                    elif isinstance(now, list):
                        image = {c: row[i] for c, i in zip(self.columns, at, strict=True)}
                        for update in now:
                            image.update(update)
                        out.append([image[c] for c in self.columns])
                    if len(out) >= batch_size:
                        yield out
                        out = []
        for now in self.state.values():
            if isinstance(now, dict):
                out.append([now.get(c) for c in self.columns])
                if len(out) >= batch_size:
                    yield out
                    out = []
        if out:
            yield out
