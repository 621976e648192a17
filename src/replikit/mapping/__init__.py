"""Table mappings: selection rules, transformation rules, row filters, masks (DMS vocabulary).

:class:`Mappings` holds the rules (:mod:`replikit.mapping.rules`); bound to a source table
they give its target shape and its row and change functions
(:class:`~replikit.mapping.bound.TableMapping`); :meth:`Mappings.from_dms_json` reads a DMS
table-mapping document (:mod:`replikit.mapping.dms`).
"""

from __future__ import annotations

from replikit.mapping.binding import MappingTransform, bind_table
from replikit.mapping.bound import TableMapping
from replikit.mapping.filters import AllOf, AnyOf, Condition, condition
from replikit.mapping.masking import MASKS, Mask
from replikit.mapping.rules import Mappings, Rule, Selection

__all__ = [
    "MASKS",
    "AllOf",
    "AnyOf",
    "Condition",
    "MappingTransform",
    "Mappings",
    "Mask",
    "Rule",
    "Selection",
    "TableMapping",
    "bind_table",
    "condition",
]
