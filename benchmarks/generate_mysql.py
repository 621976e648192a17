"""Deterministic MariaDB source data for the MariaDB -> PostgreSQL full-load benchmark.

The MySQL twin of ``generate.py``: ``customers`` and ``orders`` are filled entirely
server-side (``INSERT ... SELECT`` from MariaDB's ``seq_1_to_N`` sequence tables, with
CRC32/MD5-based pseudo-random expressions), so 1M orders take seconds and every run produces
byte-identical data. Secondary indexes and the foreign key are added after the rows.

    python benchmarks/generate_mysql.py --url mysql://bench:bench@127.0.0.1:3306/bench_src \
        --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any
from urllib.parse import unquote, urlsplit

import pymysql

GENERATOR_VERSION = 1
TABLES = ("customers", "orders")  # parent first
CHUNK = 500_000  # rows per INSERT ... SELECT (keeps each transaction's undo small)

#: (column, kind) per table in source order; kinds drive verification (see full_load_mysql)
COLUMNS: dict[str, list[tuple[str, str]]] = {
    "customers": [
        ("id", "int"),
        ("email", "text"),
        ("name", "text"),
        ("country", "text"),
        ("created_at", "datetime"),
    ],
    "orders": [
        ("id", "int"),
        ("customer_id", "int"),
        ("quantity", "int"),
        ("amount", "decimal"),
        ("discount", "double"),
        ("status", "text"),
        ("sku", "text"),
        ("note", "text"),
        ("created_at", "datetime"),
        ("shipped_at", "datetime"),
        ("delivery_date", "date"),
        ("is_gift", "bool"),
        ("metadata", "json"),
    ],
}
#: what the source has (the PG targets are compared against this)
SOURCE_OBJECTS = {"primary_keys": 2, "indexes": 8, "foreign_keys": 1}


def _h(seed: int) -> str:
    """A deterministic 32-bit pseudo-random value of the row number and ``seed``."""
    return f"CRC32(CONCAT(seq, '/', {seed}))"


def _h48(a: int, b: int) -> str:
    """48 pseudo-random bits (two CRC32s): enough for microseconds over five years."""
    return f"({_h(a)} * 65536 + {_h(b)} % 65536)"


DDL = [
    "DROP TABLE IF EXISTS orders",
    "DROP TABLE IF EXISTS customers",
    """CREATE TABLE customers (
        id          BIGINT NOT NULL PRIMARY KEY,
        email       VARCHAR(255) NOT NULL,
        name        VARCHAR(100) NOT NULL,
        country     CHAR(2) NOT NULL,
        created_at  DATETIME(6) NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
    """CREATE TABLE orders (
        id             BIGINT NOT NULL PRIMARY KEY,
        customer_id    BIGINT NOT NULL,
        quantity       INT NOT NULL,
        amount         DECIMAL(12,2) NOT NULL,
        discount       DOUBLE NULL,
        status         VARCHAR(16) NOT NULL,
        sku            VARCHAR(64) NOT NULL,
        note           TEXT NULL,
        created_at     DATETIME(6) NOT NULL,
        shipped_at     DATETIME(6) NULL,
        delivery_date  DATE NULL,
        is_gift        BOOLEAN NOT NULL,
        metadata       JSON NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci""",
]

_FIRST = (
    "'José','Zoë','Łukasz','王芳','Ἀθηνᾶ','Müller','Ñúñez','Søren','Chloé','Олег',"
    "'Ana-María','O''Brien','Nguyễn','François','Björk','Dvořák','😀 Smile'"
)
_LAST = (
    "'García','Schäfer','Kowalski','李','Παπαδόπουλος','Åström','Dupont',"
    "'Smith, Jr.','Иванов','Ødegård','van der Berg','Çelik'"
)

CUSTOMERS_INSERT = f"""
INSERT INTO customers (id, email, name, country, created_at)
SELECT
    seq,
    CONCAT('user', seq, '@',
           ELT(1 + {_h(1)} % 4, 'example.com', 'exämple.de', 'example.org', 'mail.test')),
    CONCAT(ELT(1 + {_h(2)} % 17, {_FIRST}), ' ', ELT(1 + {_h(3)} % 12, {_LAST})),
    ELT(1 + {_h(4)} % 12, 'FR','DE','PL','CN','GR','SE','ES','US','RU','NO','NL','TR'),
    TIMESTAMP'2015-01-01 00:00:00' + INTERVAL ({_h48(5, 6)} % 157680000000000) MICROSECOND
FROM seq___LO___to___HI__
"""

_CREATED = (
    f"TIMESTAMP'2020-01-01 00:00:00' + INTERVAL ({_h48(20, 40)} % 157680000000000) MICROSECOND"
)

# MariaDB string literals (default sql_mode): \n newline, \t tab, \\ one backslash.
_NOTE = (
    "CONCAT('Commande n°', seq, ', \"livrée\" à l''adresse: ', "
    f"{_h(18)} % 1000, ' rue de l''Église, Zürich;\\nnote: ', SUBSTR(MD5(seq * 7), 1, 20), "
    "', ½ prix — ça va? path C:\\\\tmp\\\\x\\ttab, emoji 🚚, id=', seq, '\\n', "
    f"REPEAT(SUBSTR(MD5(seq), 1, 8), 1 + {_h(19)} % 8))"
)

ORDERS_INSERT = f"""
INSERT INTO orders (id, customer_id, quantity, amount, discount, status, sku, note,
                    created_at, shipped_at, delivery_date, is_gift, metadata)
SELECT
    seq,
    1 + {_h(11)} % __CUSTOMERS__,
    1 + {_h(12)} % 100,
    CAST(({_h48(13, 33)} % 1000000000000) / 100 AS DECIMAL(12,2)),
    IF({_h(14)} % 5 = 0, NULL, ({_h(14)} % 1000000007) / 7919e0),
    ELT(1 + {_h(15)} % 6, 'pending','paid','shipped','delivered','cancelled','refunded'),
    CONCAT('SKU-', LPAD({_h(16)} % 1000000, 6, '0'), '-', SUBSTR(MD5(seq), 1, 12)),
    IF({_h(17)} % 4 = 0, NULL, {_NOTE}),
    {_CREATED},
    IF({_h(21)} % 10 < 3, NULL,
       {_CREATED} + INTERVAL ({_h48(21, 41)} % 1209600000000) MICROSECOND),
    IF({_h(22)} % 10 < 4, NULL, DATE'2020-01-01' + INTERVAL ({_h(22)} % 2200) DAY),
    {_h(23)} % 10 = 0,
    IF({_h(24)} % 2 = 0, NULL, JSON_OBJECT(
        'channel', ELT(1 + {_h(27)} % 4, 'web', 'app', 'store', 'phone'),
        'items', 1 + {_h(12)} % 100,
        'coupon', IF({_h(25)} % 3 = 0, NULL, CONCAT('C', {_h(25)} % 999)),
        'tags', JSON_ARRAY('a', 'ü', {_h(26)} % 100)))
FROM seq___LO___to___HI__
"""

POST_DDL = [
    # Without FK checks MariaDB adds the key in place instead of copying the table.
    "SET SESSION foreign_key_checks = 0",
    "ALTER TABLE customers ADD UNIQUE KEY customers_email_key (email),"
    " ADD KEY customers_name_idx (name), ADD KEY customers_created_at_idx (created_at)",
    "ALTER TABLE orders ADD KEY orders_customer_id_idx (customer_id),"
    " ADD KEY orders_created_at_idx (created_at),"
    " ADD KEY orders_status_created_at_idx (status, created_at),"
    " ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id)"
    " REFERENCES customers (id)",
    "SET SESSION foreign_key_checks = 1",
    "ANALYZE TABLE customers, orders",
]


def default_customers(rows: int) -> int:
    """Customers scale with orders: 100k customers for the default 1M orders."""
    return max(1000, rows // 10)


def marker(rows: int, customers: int) -> str:
    return f"replikit-bench-mysql v{GENERATOR_VERSION} rows={rows} customers={customers}"


def connect(url: str) -> pymysql.Connection[Any]:
    """An autocommit PyMySQL connection to ``mysql://user:pw@host:port/db``."""
    p = urlsplit(url)
    return pymysql.connect(
        host=p.hostname or "127.0.0.1",
        port=p.port or 3306,
        user=unquote(p.username or "root"),
        password=unquote(p.password or ""),
        database=p.path.lstrip("/") or None,
        autocommit=True,
        charset="utf8mb4",
    )


def current_marker(url: str) -> str | None:
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT SCHEMA_COMMENT FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = DATABASE()"
        )
        row = cur.fetchone()
    return str(row[0]) if row and row[0] else None


def generate(
    url: str, rows: int, customers: int | None = None, force: bool = False, verbose: bool = True
) -> bool:
    """Generate the data set into ``url``'s database; returns False if it was already there."""
    customers = customers or default_customers(rows)
    want = marker(rows, customers)
    if not force and current_marker(url) == want:
        if verbose:
            print(f"MariaDB source already generated ({rows} orders, {customers} customers)")
        return False
    t0 = time.perf_counter()
    with connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        row = cur.fetchone()
        assert row is not None
        dbname = str(row[0])
        cur.execute(f"ALTER DATABASE `{dbname}` COMMENT = ''")
        for statement in DDL:
            cur.execute(statement)
        _fill(cur, CUSTOMERS_INSERT, customers, customers)
        _fill(cur, ORDERS_INSERT, rows, customers)
        for statement in POST_DDL:
            cur.execute(statement)
            if cur.description:
                cur.fetchall()
        cur.execute(f"ALTER DATABASE `{dbname}` COMMENT = %s", (want,))
    if verbose:
        print(
            f"generated MariaDB source: {rows} orders + {customers} customers in "
            f"{time.perf_counter() - t0:.1f}s"
        )
    return True


def _fill(cur: Any, template: str, rows: int, customers: int) -> None:
    sql = template.replace("__CUSTOMERS__", str(int(customers)))
    for lo in range(1, rows + 1, CHUNK):
        hi = min(rows, lo + CHUNK - 1)
        cur.execute(sql.replace("__LO__", str(lo)).replace("__HI__", str(hi)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the MariaDB benchmark source data.")
    parser.add_argument("--url", required=True, help="mysql://user:pw@host:port/db")
    parser.add_argument("--rows", type=int, default=1_000_000, help="orders rows")
    parser.add_argument(
        "--customers", type=int, default=None, help="customers rows (default rows/10, min 1000)"
    )
    parser.add_argument("--force", action="store_true", help="regenerate even if current")
    args = parser.parse_args(argv)
    generate(args.url, args.rows, args.customers, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
