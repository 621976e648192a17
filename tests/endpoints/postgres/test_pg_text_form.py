"""A type override to text writes PostgreSQL values as PostgreSQL prints them.

The full load reads such columns as ``v::text``; change data capture hands canonical Python
values, which :func:`text_form_for` must print the same way, so one column holds one spelling
whichever way a row arrived. Checked against the server's own ``::text``.
"""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replikit.endpoints.postgres._dialect import DIALECT
from replikit.schema.textform import text_form_for

SESSION = "SET TimeZone = 'UTC'; SET DateStyle = ISO; SET extra_float_digits = 3"
OFFSETS = st.integers(-15 * 60, 15 * 60).map(lambda m: timezone(timedelta(minutes=m)))
VALUES = {
    "double precision": st.floats(width=64),
    "real": st.floats(width=32),
    "numeric": st.decimals(allow_nan=True, allow_infinity=False, places=None).filter(
        lambda d: (d.is_qnan() and not d.is_signed()) or (d.is_finite() and abs(d.adjusted()) < 100)
    ),
    "boolean": st.booleans(),
    "bytea": st.binary(max_size=8),
    "date": st.dates(),
    "time": st.times(),
    "time with time zone": st.times(timezones=OFFSETS),
    "timestamp": st.datetimes(),
    "timestamp with time zone": st.datetimes(timezones=st.just(UTC)),
}


@pytest.fixture(scope="module")
def conn(pg_server):
    with pg_server.connect() as c:
        c.execute(SESSION)
        yield c


@pytest.mark.parametrize("pgtype", list(VALUES))
def test_text_form_is_postgresql_text(conn, pgtype):
    write = text_form_for(DIALECT.parse_type(pgtype), "postgresql")

    @settings(max_examples=60, deadline=None)
    @given(VALUES[pgtype])
    def check(value):
        cast = "float4" if pgtype == "real" else pgtype
        (server,) = conn.execute(f"SELECT (%s::{cast})::text", (value,)).fetchone()
        (back,) = conn.execute(f"SELECT %s::{cast}", (value,)).fetchone()
        assert write(back) == server

    check()
