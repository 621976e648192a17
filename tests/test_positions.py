import pytest
from hypothesis import given
from hypothesis import strategies as st

from replikit import ConfigError, PgLsn, Position, SqliteSeq


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_pg_lsn_round_trips(value):
    lsn = PgLsn(value)
    assert Position.parse(str(lsn)) == lsn
    assert PgLsn.from_pg(str(lsn).removeprefix("pg:")) == lsn


@given(st.integers(min_value=0, max_value=2**63), st.integers(min_value=0, max_value=2**63))
def test_positions_order_like_their_values(a, b):
    assert (SqliteSeq(a) < SqliteSeq(b)) == (a < b)
    assert (PgLsn(a) <= PgLsn(b)) == (a <= b)


def test_bad_positions_raise_config_error():
    for text in ["", "pg:zz/1", "nope:1", "sqlite:x"]:
        with pytest.raises(ConfigError):
            Position.parse(text)
