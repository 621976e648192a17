"""``_replikit_manifest.json``: the folder's commit record (checkpoints, committed changes).

The manifest is rewritten atomically (temporary file, then rename) and only after the change
files it commits are in place, so it is the one source of truth: a change file whose
sequence number is above ``change_seq`` was written by an apply that never committed (the
process died between its data files and the manifest) and is removed before the next apply;
readers never read it. A folder with a manifest is one replikit wrote; a target folder
holding other things and no manifest is refused.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from replikit.endpoints.files._connect import Store
from replikit.endpoints.files._ddl import MANIFEST
from replikit.errors import SchemaError
from replikit.pipeline import apply_support
from replikit.pipeline.contracts import Checkpoint

__all__ = ["Manifest", "ManifestFile"]

_VERSION = 1


@dataclass(slots=True)
class Manifest:
    """The manifest's content: per-task checkpoint rows and the last committed change file."""

    change_seq: int = 0
    tasks: dict[str, list[Any]] = field(default_factory=dict)

    def checkpoint(self, task: str, where: str) -> Checkpoint | None:
        """``task``'s checkpoint (``None``: none stored)."""
        row = self.tasks.get(task)
        if row is None:
            return None
        start, position, phase, loaded, commit_ts = row
        ts = None if commit_ts is None else datetime.fromisoformat(commit_ts)
        return apply_support.checkpoint_from_row(
            task, (start, position, phase, loaded, ts), table=where
        )

    def store(self, checkpoint: Checkpoint) -> None:
        """Set ``checkpoint``'s task row."""
        task, start, position, phase, loaded, ts = apply_support.checkpoint_values(checkpoint)
        self.tasks[task] = [start, position, phase, loaded, None if ts is None else ts.isoformat()]


class ManifestFile:
    """The manifest of one root folder, read and rewritten under a lock."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.path = store.path(MANIFEST)
        self.lock = threading.RLock()

    def exists(self) -> bool:
        """Whether the folder has a manifest (replikit wrote it)."""
        return self.store.exists(self.path)

    def read(self) -> Manifest:
        """The manifest (empty when there is none yet)."""
        if not self.store.exists(self.path):
            return Manifest()
        text = self.store.read_text(self.path)
        try:
            doc = json.loads(text)
            return Manifest(int(doc.get("change_seq", 0)), dict(doc.get("tasks", {})))
        except (ValueError, TypeError, AttributeError) as exc:
            raise SchemaError(
                f"{self.store.where}/{MANIFEST} is damaged ({exc}); restore it or start the "
                "task again into an empty folder"
            ) from None

    def write(self, manifest: Manifest) -> None:
        """Replace the manifest atomically."""
        doc = {"replikit": _VERSION, "change_seq": manifest.change_seq, "tasks": manifest.tasks}
        self.store.write_text(self.path, json.dumps(doc, indent=1, sort_keys=True))

    def ensure(self) -> None:
        """Write an empty manifest when there is none (marks the folder as replikit's)."""
        with self.lock:
            if not self.exists():
                self.write(Manifest())
