"""Peer: dlt's ``sql_database`` source (PostgreSQL or MariaDB) into its ``duckdb`` destination.

Runs in the benchmark-only virtualenv ``benchmarks/.data/venv-duckdb-peers``
(``benchmarks/peers/requirements-duckdb.txt``), never in the project's. ``--backend
connectorx`` (whole tables as Arrow) or ``pyarrow`` (SQLAlchemy rows into Arrow batches), both
with full reflection so column types are kept. A fresh ``pipelines_dir`` per run.

    python benchmarks/peers/dlt_duckdb.py PG_OR_MYSQL_URL /tmp/x.duckdb --backend pyarrow \
        -t customers -t orders --pipelines-dir /tmp/x
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
from dlt.sources.sql_database import sql_database


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="dlt sql_database -> duckdb peer")
    parser.add_argument("source_url", help="postgresql://... or mysql://...")
    parser.add_argument("duckdb_path")
    parser.add_argument("-t", "--table", action="append", required=True)
    parser.add_argument("--backend", choices=["connectorx", "pyarrow"], default="pyarrow")
    parser.add_argument("--dataset", default="public")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--pipelines-dir", required=True)
    args = parser.parse_args(argv)

    kwargs = {}
    credentials = args.source_url  # SQLAlchemy's (reflection; rows with pyarrow)
    if credentials.startswith("mysql://"):
        credentials = credentials.replace("mysql://", "mysql+pymysql://", 1)
    else:
        credentials = credentials.replace("postgresql://", "postgresql+psycopg2://", 1)
    if args.backend == "connectorx":
        kwargs["backend_kwargs"] = {"conn": args.source_url}
    source = sql_database(
        credentials=credentials,
        table_names=args.table,
        backend=args.backend,
        chunk_size=args.chunk_size,
        reflection_level="full_with_precision",
        **kwargs,
    )
    pipeline = dlt.pipeline(
        pipeline_name="replikit_bench_duckdb",
        destination=dlt.destinations.duckdb(args.duckdb_path),
        dataset_name=args.dataset,
        pipelines_dir=args.pipelines_dir,
    )
    info = pipeline.run(source, write_disposition="replace")
    info.raise_on_failed_jobs()
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
