"""Test helpers that ship with replikit (``pip install "replikit[testing]"``).

* the pytest plugin (:mod:`replikit.testing.plugin`, active once replikit is installed): the
  ``replikit_clone`` fixture clones a database, or a referentially closed subset of it
  (:mod:`replikit.testing.subset`), into each test; throwaway servers in
  :mod:`replikit.testing.servers`;
* :func:`assert_databases_equal` / :func:`assert_tables_equal`: equality through the
  validation engine, with the differing rows side by side in the failure message;
* :mod:`replikit.testing.strategies`: Hypothesis strategies for values and rows;
* :mod:`replikit.testing.conformance`: the suite every endpoint family runs, replikit's own and
  third-party ones registered through the ``replikit.endpoints`` entry point.
"""

from __future__ import annotations

from typing import Any

__all__ = ["assert_databases_equal", "assert_tables_equal"]


def __getattr__(name: str) -> Any:
    # imported on use: the plugin imports this package at pytest start-up
    if name in __all__:
        from replikit.testing import assertions

        return getattr(assertions, name)
    raise AttributeError(f"module 'replikit.testing' has no attribute {name!r}")
