"""Running a full load's units on a Dask cluster (``replikit[dask]``).

A ``distributed.Client`` given as a task's ``executor`` runs each unit (a table, or a key range
of one) on the cluster's workers; see :func:`~replikit.pipeline.units.executor_of` and
docs/scale.md. This module only connects the CLI's ``--dask ADDRESS`` to a scheduler.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from replikit.endpoints.base import require
from replikit.errors import ConnectError

__all__ = ["client"]


@contextlib.contextmanager
def client(address: str, *, timeout: float = 10.0) -> Iterator[Any]:
    """A ``distributed.Client`` connected to the scheduler at ``address``, closed on exit.

    Raises:
        MissingDependencyError: ``distributed`` is not installed (``pip install
            'replikit[dask]'``).
        ConnectError: no scheduler answers at ``address`` within ``timeout`` seconds.
    """
    distributed = require(
        "distributed", package="distributed", extra="dask", purpose="Running units on Dask"
    )
    try:
        dask_client = distributed.Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc).strip() or type(exc).__name__
        raise ConnectError(
            f"cannot reach the Dask scheduler at {address!r} ({why}): "
            "check the address (tcp://host:8786) and that `dask scheduler` runs there"
        ) from None
    try:
        yield dask_client
    finally:
        dask_client.close()
