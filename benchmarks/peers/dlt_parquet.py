"""Peer: dlt's ``sql_database`` source (PostgreSQL) into its ``filesystem`` destination as Parquet.

Runs in the benchmark-only virtualenv ``benchmarks/.data/venv-parquet-peers``
(``benchmarks/peers/requirements-parquet.txt``), never in the project's. ``--backend
connectorx`` or ``pyarrow``, with full reflection so column types are kept. Files land in
``<folder>/<dataset>/<table>/*.parquet``.

    python benchmarks/peers/dlt_parquet.py PG_URL /tmp/out --backend pyarrow \
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
    parser = argparse.ArgumentParser(description="dlt sql_database -> filesystem (parquet) peer")
    parser.add_argument("pg_url")
    parser.add_argument("folder")
    parser.add_argument("-t", "--table", action="append", required=True)
    parser.add_argument("--backend", choices=["connectorx", "pyarrow"], default="pyarrow")
    parser.add_argument("--dataset", default="public")
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--pipelines-dir", required=True)
    args = parser.parse_args(argv)

    kwargs = {}
    credentials = args.pg_url
    if args.backend == "connectorx":
        kwargs["backend_kwargs"] = {"conn": args.pg_url}
    else:
        credentials = args.pg_url.replace("postgresql://", "postgresql+psycopg2://", 1)
    source = sql_database(
        credentials=credentials,
        table_names=args.table,
        backend=args.backend,
        chunk_size=args.chunk_size,
        reflection_level="full_with_precision",
        **kwargs,
    )
    pipeline = dlt.pipeline(
        pipeline_name="replikit_bench_parquet",
        destination=dlt.destinations.filesystem(f"file://{os.path.abspath(args.folder)}"),
        dataset_name=args.dataset,
        pipelines_dir=args.pipelines_dir,
    )
    info = pipeline.run(source, write_disposition="replace", loader_file_format="parquet")
    info.raise_on_failed_jobs()
    print(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
