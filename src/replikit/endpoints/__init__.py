"""Endpoint families. Each subpackage registers its URL schemes; drivers load lazily."""

from replikit.endpoints.base import Capabilities, Endpoint, endpoint, mask_url, register

__all__ = ["Capabilities", "Endpoint", "endpoint", "mask_url", "register"]
