"""Endpoint families. Each subpackage registers its URL schemes; drivers load lazily.

The names below load :mod:`replikit.endpoints.base` on first use, so that importing a light
module of this package (``replikit.endpoints._url``: URLs and their masking, for the logs)
does not load the endpoint machinery.
"""

import importlib
import typing

if typing.TYPE_CHECKING:
    from replikit.endpoints.base import Capabilities, Endpoint, endpoint, mask_url, register

__all__ = ["Capabilities", "Endpoint", "endpoint", "mask_url", "register"]

if not typing.TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        if name not in __all__:
            raise AttributeError(f"module 'replikit.endpoints' has no attribute {name!r}")
        value = getattr(importlib.import_module("replikit.endpoints.base"), name)
        globals()[name] = value
        return value
