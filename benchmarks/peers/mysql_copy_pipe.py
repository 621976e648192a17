"""Peer: the simplest streaming MariaDB -> PostgreSQL copy, mysqlclient (or PyMySQL) -> COPY.

Per table: an unbuffered ``SSCursor`` (``mysql_use_result``) read streamed into
``COPY t FROM STDIN`` with ``Copy.write_row``, in batches, so memory stays flat. The DDL is
hand-written for the benchmark's two tables with full fidelity (bigint, numeric(12,2),
double precision, boolean, timestamp(6), date, jsonb); tables are created before the data,
primary keys, indexes and the foreign key after it, as a dump restore does.

``--values typed``: mysqlclient's default conversions (int, Decimal, float, datetime, date),
dumped back to text by psycopg. ``--values text``: the wire text passed through (every value
decoded as ``str``, no parsing on the client; PostgreSQL parses it). ``--values lines``: the
server builds each row's COPY text line (``CONCAT_WS`` + ``REPLACE`` escapes, backslash-N for NULL)
and the client only joins bytes, so the driver decodes one field per row instead of 13; with
``--driver pymysql`` this shows what a PyMySQL-only install can reach.

    python benchmarks/peers/mysql_copy_pipe.py MYSQL_URL PG_URL --values text
"""

from __future__ import annotations

import argparse
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

import MySQLdb
import MySQLdb.cursors
import psycopg
from MySQLdb.constants import FIELD_TYPE

PRE_DATA = """
create table customers (
    id bigint not null, email varchar(255) not null, name varchar(100) not null,
    country char(2) not null, created_at timestamp(6) not null);
create table orders (
    id bigint not null, customer_id bigint not null, quantity integer not null,
    amount numeric(12,2) not null, discount double precision, status varchar(16) not null,
    sku varchar(64) not null, note text, created_at timestamp(6) not null,
    shipped_at timestamp(6), delivery_date date, is_gift boolean not null, metadata jsonb);
"""
POST_DATA = """
alter table customers add primary key (id);
create unique index customers_email_key on customers (email);
create index customers_name_idx on customers (name);
create index customers_created_at_idx on customers (created_at);
alter table orders add primary key (id);
create index orders_customer_id_idx on orders (customer_id);
create index orders_created_at_idx on orders (created_at);
create index orders_status_created_at_idx on orders (status, created_at);
alter table orders add constraint orders_customer_id_fkey
    foreign key (customer_id) references customers (id);
"""
COLUMNS = {
    "customers": "id, email, name, country, created_at",
    "orders": "id, customer_id, quantity, amount, discount, status, sku, note, created_at, "
    "shipped_at, delivery_date, is_gift, metadata",
}
#: columns whose text may hold COPY's special characters (backslash, newline, CR, tab)
TEXT_COLUMNS = {"email", "name", "country", "status", "sku", "note", "metadata"}
BATCH = 10_000
# (MariaDB literal of the character, MariaDB literal of its COPY escape)
_ESCAPES = ((r"\\", r"\\\\"), (r"\n", r"\\n"), (r"\r", r"\\r"), (r"\t", r"\\t"))


def _text_conv() -> dict[int, Any]:
    # Every value as the text that came over the wire: mysqlclient hands numbers over as
    # bytes, and decimals and temporal values already decoded (``str`` passes them on).
    as_bytes = ("TINY", "SHORT", "LONG", "LONGLONG", "INT24", "FLOAT", "DOUBLE", "YEAR")
    as_str = ("DECIMAL", "NEWDECIMAL", "DATE", "DATETIME", "TIMESTAMP", "TIME")
    conv: dict[int, Any] = {getattr(FIELD_TYPE, n): bytes.decode for n in as_bytes}
    conv.update({getattr(FIELD_TYPE, n): str for n in as_str})
    return conv


def copy_line_sql(table: str) -> str:
    """A SELECT whose one column is the row as a line of PostgreSQL COPY text (sans newline).

    MariaDB string literals: two backslashes are one, backslash-n is a newline. Non-text
    columns print nothing COPY would need escaped (digits, dates, '0'/'1' for TINYINT(1)).
    """
    parts = []
    for col in (c.strip() for c in COLUMNS[table].split(",")):
        expr = f"`{col}`"
        if col in TEXT_COLUMNS:
            for char, escaped in _ESCAPES:
                expr = f"REPLACE({expr}, '{char}', '{escaped}')"
        parts.append(f"IFNULL({expr}, '\\\\N')")
    return f"SELECT CONCAT_WS('\\t', {', '.join(parts)}) FROM `{table}`"


def mysql_connect(url: str, values: str, driver: str) -> Any:
    p = urlsplit(url)
    kwargs: dict[str, Any] = {
        "host": p.hostname or "127.0.0.1",
        "port": p.port or 3306,
        "user": unquote(p.username or "root"),
        "password": unquote(p.password or ""),
        "database": p.path.lstrip("/"),
        "charset": "utf8mb4",
    }
    if values == "lines":
        kwargs["use_unicode"] = False  # the lines go to COPY as bytes, never decoded
    if driver == "pymysql":
        import pymysql

        return pymysql.connect(**kwargs)
    if values == "text":
        kwargs["conv"] = _text_conv()
    return MySQLdb.connect(**kwargs)


def _ss_cursor(conn: Any) -> Any:
    if type(conn).__module__.startswith("pymysql"):
        import pymysql.cursors

        return conn.cursor(pymysql.cursors.SSCursor)
    return conn.cursor(MySQLdb.cursors.SSCursor)


def copy_table(src: Any, dst: psycopg.Connection[Any], table: str, values: str) -> int:
    cols = COLUMNS[table]
    rows = 0
    cur = _ss_cursor(src)
    try:
        if values == "lines":
            cur.execute(copy_line_sql(table))
        else:
            cur.execute(f"SELECT {cols} FROM `{table}`")
        with dst.cursor() as dcur, dcur.copy(f"copy {table} ({cols}) from stdin") as copy:
            while batch := cur.fetchmany(BATCH):
                if values == "lines":
                    copy.write(b"\n".join([r[0] for r in batch]) + b"\n")
                else:
                    for row in batch:
                        copy.write_row(row)
                rows += len(batch)
    finally:
        cur.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mysqlclient SSCursor -> COPY peer")
    parser.add_argument("mysql_url")
    parser.add_argument("pg_url")
    parser.add_argument("--values", choices=["typed", "text", "lines"], default="typed")
    parser.add_argument("--driver", choices=["mysqlclient", "pymysql"], default="mysqlclient")
    args = parser.parse_args(argv)

    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(PRE_DATA)
    src = mysql_connect(args.mysql_url, args.values, args.driver)
    try:
        with src.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        with psycopg.connect(args.pg_url) as dst:
            for table in COLUMNS:
                copy_table(src, dst, table, args.values)
            dst.commit()
    finally:
        src.close()
    with psycopg.connect(args.pg_url, autocommit=True) as conn:
        conn.execute(POST_DATA)
    return 0


if __name__ == "__main__":
    sys.exit(main())
