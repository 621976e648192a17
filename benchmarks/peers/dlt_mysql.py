"""Peer: dlt's ``sql_database`` source (MariaDB) into its ``postgres`` destination.

Runs in the benchmark-only virtualenv (``benchmarks/peers/requirements-mysql.txt``), never in
the project's. ``--backend connectorx`` (dlt's fastest: whole tables as Arrow) or ``pyarrow``
(SQLAlchemy + PyMySQL/mysqlclient rows turned into Arrow batches); ``--format csv`` loads with
PostgreSQL COPY. Each run uses a fresh ``pipelines_dir`` so no local state is reused.

    python benchmarks/peers/dlt_mysql.py MYSQL_URL PG_URL --dataset public \
        --backend connectorx -t customers -t orders --pipelines-dir /tmp/x
"""

from __future__ import annotations

import argparse
import os
import sys
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
from dlt.sources.sql_database import sql_database


def _with_password(url: str) -> str:
    """dlt insists on a password; a trust-auth server ignores the one given here."""
    parts = urlsplit(url)
    if parts.password is not None or parts.username is None:
        return url
    netloc = parts.netloc.replace(f"{parts.username}@", f"{parts.username}:unused@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dlt sql_database -> postgres peer")
    parser.add_argument("mysql_url", help="mysql://user:pw@host:port/db")
    parser.add_argument("pg_url", help="postgresql://user@host:port/db")
    parser.add_argument("-t", "--table", action="append", required=True)
    parser.add_argument("--backend", choices=["connectorx", "pyarrow"], default="connectorx")
    parser.add_argument("--format", choices=["csv", "insert_values"], default="csv")
    parser.add_argument("--dataset", default="public")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument(
        "--reflection",
        default="full",
        choices=["minimal", "full", "full_with_precision"],
    )
    parser.add_argument("--pipelines-dir", required=True)
    args = parser.parse_args(argv)

    kwargs = {}
    credentials = args.mysql_url
    if args.backend == "connectorx":
        kwargs["backend_kwargs"] = {"conn": args.mysql_url}
    else:
        credentials = args.mysql_url.replace("mysql://", "mysql+pymysql://", 1)
    source = sql_database(
        credentials=credentials,
        table_names=args.table,
        backend=args.backend,
        chunk_size=args.chunk_size,
        reflection_level=args.reflection,
        **kwargs,
    )
    pipeline = dlt.pipeline(
        pipeline_name="replikit_bench",
        destination=dlt.destinations.postgres(credentials=_with_password(args.pg_url)),
        dataset_name=args.dataset,
        pipelines_dir=args.pipelines_dir,
    )
    info = pipeline.run(source, write_disposition="replace", loader_file_format=args.format)
    info.raise_on_failed_jobs()
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
