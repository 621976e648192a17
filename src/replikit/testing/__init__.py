"""Test helpers that ship with replikit.

:mod:`replikit.testing.conformance` is the suite every endpoint family runs, replikit's own and
third-party ones registered through the ``replikit.endpoints`` entry point. It needs pytest
(``pip install "replikit[testing]"``).
"""
