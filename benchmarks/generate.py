"""Deterministic source-data generator for the full-load benchmark.

Creates ``customers`` and ``orders`` in the source database entirely server-side
(``INSERT ... SELECT generate_series`` with hash-based pseudo-random expressions), so
1M orders take seconds and every run produces byte-identical data.

    python benchmarks/generate.py --url postgresql://postgres@127.0.0.1:5432/bench_src \
        --rows 1000000
"""

from __future__ import annotations

import argparse
import sys
import time

import psycopg

GENERATOR_VERSION = 1
TABLES = ("customers", "orders")

# hashint8extended(g, seed) is PostgreSQL's portable 64-bit hash: deterministic across
# platforms and versions (hash partitioning depends on it).  H(seed) -> bigint >= 0.


def _h(seed: int) -> str:
    return f"(hashint8extended(g, {seed}) & 9223372036854775807)"


DDL = """
drop table if exists orders;
drop table if exists customers;
create table customers (
    id          bigint primary key,
    email       varchar(255) not null,
    name        text not null,
    country     char(2) not null,
    created_at  timestamp(6) not null
);
create table orders (
    id             bigint primary key,
    customer_id    bigint not null,
    quantity       integer not null,
    amount         numeric(12,2) not null,
    discount       double precision,
    status         varchar(16) not null,
    sku            varchar(64) not null,
    note           text,
    created_at     timestamp(6) not null,
    shipped_at     timestamp(6),
    delivery_date  date,
    is_gift        boolean not null,
    metadata       json
);
"""

CUSTOMERS_INSERT = f"""
insert into customers (id, email, name, country, created_at)
select
    g,
    'user' || g || '@' || (array['example.com','exämple.de','example.org','mail.test'])
        [1 + {_h(1)} % 4],
    (array['José','Zoë','Łukasz','王芳','Ἀθηνᾶ','Müller','Ñúñez','Søren','Chloé','Олег',
           'Ana-María','O''Brien','Nguyễn','François','Björk','Dvořák','😀 Smile'])
        [1 + {_h(2)} % 17]
    || ' ' ||
    (array['García','Schäfer','Kowalski','李','Παπαδόπουλος','Åström','Dupont',
           'Smith, Jr.','Иванов','Ødegård','van der Berg','Çelik'])
        [1 + {_h(3)} % 12],
    (array['FR','DE','PL','CN','GR','SE','ES','US','RU','NO','NL','TR'])[1 + {_h(4)} % 12],
    timestamp '2015-01-01' + ({_h(5)} % 157680000000000) * interval '1 microsecond'
from generate_series(1, __CUSTOMERS__::bigint) as g
"""

ORDERS_INSERT = f"""
insert into orders (id, customer_id, quantity, amount, discount, status, sku, note,
                    created_at, shipped_at, delivery_date, is_gift, metadata)
select
    g,
    1 + {_h(11)} % __CUSTOMERS__::bigint,
    (1 + {_h(12)} % 100)::int,
    (({_h(13)} % 10000000000) / 100.0)::numeric(12,2),
    case when {_h(14)} % 5 = 0 then null
         else ({_h(14)} % 1000000007)::double precision / 7919.0 end,
    (array['pending','paid','shipped','delivered','cancelled','refunded'])[1 + {_h(15)} % 6],
    'SKU-' || lpad(({_h(16)} % 1000000)::text, 6, '0') || '-' || substr(md5(g::text), 1, 12),
    case when {_h(17)} % 4 = 0 then null
         else format(
           E'Commande n°%s, "livrée" à l''adresse: %s rue de l''Église, Zürich;\\n'
           || E'note: %s, ½ prix — ça va? path C:\\\\tmp\\\\x\\ttab, '
           || E'emoji 🚚, id=%s\\n%s',
           g, {_h(18)} % 1000, substr(md5((g * 7)::text), 1, 20), g,
           repeat(substr(md5(g::text), 1, 8), 1 + ({_h(19)} % 8)::int))
    end,
    timestamp '2020-01-01' + ({_h(20)} % 157680000000000) * interval '1 microsecond',
    case when {_h(21)} % 10 < 3 then null
         else timestamp '2020-01-01' + ({_h(20)} % 157680000000000) * interval '1 microsecond'
              + ({_h(21)} % 1209600000000) * interval '1 microsecond' end,
    case when {_h(22)} % 10 < 4 then null
         else date '2020-01-01' + ({_h(22)} % 2200)::int end,
    {_h(23)} % 10 = 0,
    case when {_h(24)} % 2 = 0 then null
         else json_build_object(
           'channel', (array['web','app','store','phone'])[1 + {_h(24)} % 4],
           'items', (1 + {_h(12)} % 100)::int,
           'coupon', case when {_h(25)} % 3 = 0 then null else 'C' || ({_h(25)} % 999) end,
           'tags', json_build_array('a', 'ü', {_h(26)} % 100))
    end
from generate_series(1, __ROWS__::bigint) as g
"""

POST_DDL = """
create unique index customers_email_key on customers (email);
create index customers_name_idx on customers (name);
create index customers_created_at_idx on customers (created_at);
create index orders_customer_id_idx on orders (customer_id);
create index orders_created_at_idx on orders (created_at);
create index orders_status_created_at_idx on orders (status, created_at);
alter table orders add constraint orders_customer_id_fkey
    foreign key (customer_id) references customers (id);
"""


def default_customers(rows: int) -> int:
    """Customers scale with orders: 100k customers for the default 1M orders."""
    return max(1000, rows // 10)


def marker(rows: int, customers: int) -> str:
    return f"replikit-bench v{GENERATOR_VERSION} rows={rows} customers={customers}"


def is_current(url: str, rows: int, customers: int) -> bool:
    """True if the database already holds exactly this generated data set."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select shobj_description(oid, 'pg_database') from pg_database "
            "where datname = current_database()"
        ).fetchone()
    return bool(row and row[0] == marker(rows, customers))


def generate(
    url: str, rows: int, customers: int | None = None, force: bool = False, verbose: bool = True
) -> bool:
    """Generate the data set into ``url``; returns False if it was already there."""
    customers = customers or default_customers(rows)
    if not force and is_current(url, rows, customers):
        if verbose:
            print(f"source already generated ({rows} orders, {customers} customers)")
        return False
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        dbname = conn.info.dbname
        conn.execute(f'comment on database "{dbname}" is null')
        with conn.transaction():
            conn.execute(DDL)
            # ints formatted in (no params): the SQL is full of the % operator.
            conn.execute(CUSTOMERS_INSERT.replace("__CUSTOMERS__", str(int(customers))))
            conn.execute(
                ORDERS_INSERT.replace("__CUSTOMERS__", str(int(customers))).replace(
                    "__ROWS__", str(int(rows))
                )
            )
            conn.execute(POST_DDL)
        conn.execute("vacuum analyze customers")
        conn.execute("vacuum analyze orders")
        conn.execute(f"comment on database \"{dbname}\" is '{marker(rows, customers)}'")
    if verbose:
        print(f"generated {rows} orders + {customers} customers in {time.perf_counter() - t0:.1f}s")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the benchmark source data.")
    parser.add_argument("--url", required=True, help="source database URL")
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
