"""The values task settings choose from, and the defaults of a stream's memory bounds.

Kept in a module that imports nothing but the errors, so that :class:`~replikit.TaskSettings`
and the ``replikit`` command's parser load without the pipeline itself (``replikit --help``
imports this, not :mod:`replikit.pipeline.runner` or :mod:`replikit.pipeline.cdc`). The
modules that use them import them from here under their old names.
"""

from __future__ import annotations

from typing import Literal

from replikit.errors import ConfigError

__all__ = [
    "DEFAULT_QUEUE_BYTES",
    "DEFAULT_SPILL_BYTES",
    "GENERATED_COLUMNS",
    "PREP_MODES",
    "STREAM_GC",
    "StreamGc",
    "check_stream_gc",
]

#: ``target_table_prep_mode`` / ``prep_mode``
PREP_MODES = ("drop-and-create", "truncate", "do-nothing")
#: values of ``generated_columns`` (:func:`~replikit.schema.convert.plan_table`, ``TaskSettings``)
GENERATED_COLUMNS = ("create", "values")
#: default bound on the estimated size of the transactions queued between reader and applier
DEFAULT_QUEUE_BYTES = 64 * 1024 * 1024
#: the default ``spill_bytes``: a transaction estimated larger than this goes to disk
DEFAULT_SPILL_BYTES = 64 * 1024 * 1024

#: who runs the cyclic garbage collector while a CDC stream applies changes
#: (``replikit.pipeline.cdc._heap_frozen``): ``managed``, the stream (count-triggered
#: collections off, a full collection every few seconds between batches), or ``python``,
#: Python's automatic collection as the program left it
StreamGc = Literal["managed", "python"]
STREAM_GC: tuple[StreamGc, ...] = ("managed", "python")


def check_stream_gc(value: object) -> None:
    """Refuse a ``stream_gc`` that is not one of :data:`STREAM_GC`."""
    if value not in STREAM_GC:
        raise ConfigError(
            f"stream_gc must be one of {', '.join(STREAM_GC)}; got {value!r}", setting="stream_gc"
        )
