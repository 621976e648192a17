"""The text form of a canonical value, for columns whose target type is overridden to text.

Readers deliver such columns as the source database's own text form (see
:attr:`replikit.pipeline.contracts.Unit.as_text`), so ``24:00:00``, ``infinity`` and
``2000-01-01 BC`` arrive exactly as the source prints them. :func:`text_form` is the fallback
for values that still come as canonical Python values (change data capture, readers that ignore
``as_text``): ``str`` passes unchanged (values Python cannot hold already are the source's
text), everything else gets a plain ISO / decimal spelling.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

__all__ = ["text_form"]


def text_form(value: Any) -> str:
    """``value`` (a canonical value, see :mod:`replikit.schema.types`) as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else {"inf": "Infinity", "-inf": "-Infinity"}.get(repr(value), "NaN")
        )
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list):
        return json.dumps(value, default=text_form, ensure_ascii=False)
    return str(value)
