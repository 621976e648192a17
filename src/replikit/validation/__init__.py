"""Validation internals: the report model, canonical values, the row comparison, the
server-side segment checksums, the failures table and the repair.

The public entry points are :func:`replikit.validate` and :meth:`replikit.Task.validate`
(module :mod:`replikit.validate`); this package holds the pieces they are built from.
"""
