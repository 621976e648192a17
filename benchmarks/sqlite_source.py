"""The SQLite source of the SQLite -> PostgreSQL full-load benchmark, made from the PostgreSQL
source so both hold the same rows.

The tables are declared as an application would declare them in SQLite, with type names
PostgreSQL also understands (so ``sqlite3 .dump | psql`` can create them): ``INTEGER PRIMARY
KEY`` ids, ``NUMERIC(12,2)`` (stored as REAL: 12 digits are exact), ``DOUBLE PRECISION``,
``TIMESTAMP`` and ``DATE`` as ISO text (PostgreSQL's own text form), ``BOOLEAN`` as ``'t'`` /
``'f'`` (as Rails stored them; an integer 0/1 is not assignable to a PostgreSQL boolean, so the
dump could not load it) and ``JSON`` as text. The same indexes and foreign key as the source.

    python benchmarks/sqlite_source.py --url postgresql://.../bench_src --out source.db
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

import psycopg

DDL = """
CREATE TABLE customers (
    id          INTEGER PRIMARY KEY,
    email       VARCHAR(255) NOT NULL,
    name        TEXT NOT NULL,
    country     CHAR(2) NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE TABLE orders (
    id             INTEGER PRIMARY KEY,
    customer_id    INTEGER NOT NULL REFERENCES customers (id),
    quantity       INTEGER NOT NULL,
    amount         NUMERIC(12,2) NOT NULL,
    discount       DOUBLE PRECISION,
    status         VARCHAR(16) NOT NULL,
    sku            VARCHAR(64) NOT NULL,
    note           TEXT,
    created_at     TIMESTAMP NOT NULL,
    shipped_at     TIMESTAMP,
    delivery_date  DATE,
    is_gift        BOOLEAN NOT NULL,
    metadata       JSON
);
"""

INDEXES = """
CREATE UNIQUE INDEX customers_email_key ON customers (email);
CREATE INDEX customers_name_idx ON customers (name);
CREATE INDEX customers_created_at_idx ON customers (created_at);
CREATE INDEX orders_customer_id_idx ON orders (customer_id);
CREATE INDEX orders_created_at_idx ON orders (created_at);
CREATE INDEX orders_status_created_at_idx ON orders (status, created_at);
"""

# PostgreSQL prints every value in the form SQLite keeps; booleans as 't' / 'f'
SELECTS = {
    "customers": "SELECT id, email, name, country, created_at::text FROM customers ORDER BY id",
    "orders": (
        "SELECT id, customer_id, quantity, amount::text, discount, status, sku, note, "
        "created_at::text, shipped_at::text, delivery_date::text, "
        "CASE WHEN is_gift THEN 't' ELSE 'f' END, metadata::text FROM orders ORDER BY id"
    ),
}


def make(pg_url: str, path: Path) -> float:
    """Write the SQLite source at ``path`` (replaced); return the seconds it took."""
    t0 = time.perf_counter()
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(DDL)
        with psycopg.connect(pg_url) as conn:
            for table, select in SELECTS.items():
                with conn.cursor(name=f"sqlite_source_{table}") as cur:
                    cur.itersize = 20_000
                    cur.execute(select)
                    marks = ", ".join("?" * len(cur.description or ()))
                    db.execute("BEGIN")
                    while rows := cur.fetchmany(20_000):
                        db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
                    db.execute("COMMIT")
        db.executescript(INDEXES)
        db.execute("ANALYZE")
    finally:
        db.close()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the PostgreSQL source database")
    parser.add_argument("--out", required=True, type=Path, help="the SQLite file to write")
    args = parser.parse_args(argv)
    print(f"wrote {args.out} in {make(args.url, args.out):.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
