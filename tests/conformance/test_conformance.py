"""Every endpoint family replikit ships runs the conformance suite (replikit.testing.conformance)
on a fresh, empty database per test: the same tests a third-party endpoint runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import replikit as rk
from fix_mongo import MongoServer
from replikit.endpoints.base import Endpoint
from replikit.testing.conformance import EndpointConformance


class TestSqlite(EndpointConformance):
    @pytest.fixture
    def conformance_endpoint(self, tmp_path: Path) -> Iterator[Endpoint]:
        with rk.endpoint(f"sqlite:///{tmp_path / 'conformance.db'}", cdc_setup=True) as ep:
            yield ep


class TestPostgres(EndpointConformance):
    @pytest.fixture
    def conformance_endpoint(self, pg_url: str) -> Iterator[Endpoint]:
        with rk.endpoint(pg_url) as ep:
            yield ep


class TestMysql(EndpointConformance):
    @pytest.fixture
    def conformance_endpoint(self, mysql_url: str) -> Iterator[Endpoint]:
        with rk.endpoint(mysql_url) as ep:
            yield ep


class TestDuckdb(EndpointConformance):
    @pytest.fixture
    def conformance_endpoint(self, tmp_path: Path) -> Iterator[Endpoint]:
        with rk.endpoint(f"duckdb:///{tmp_path / 'conformance.duckdb'}") as ep:
            yield ep


class TestFiles(EndpointConformance):
    """Parquet, CSV and JSONL on the local file system, Parquet on fsspec's memory one."""

    @pytest.fixture(params=["parquet", "csv", "jsonl", "memory"])
    def conformance_endpoint(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> Iterator[Endpoint]:
        if request.param == "memory":
            url = f"memory://rk-conformance/{uuid.uuid4().hex}"
        else:
            url = f"file://{tmp_path / 'files'}?format={request.param}"
        with rk.endpoint(url) as ep:
            yield ep


class TestMongodb(EndpointConformance):
    """nx-27017 (a wire-protocol server) and, with REPLIKIT_TEST_MONGO_URL, a real MongoDB
    (tests/fix_mongo.py)."""

    #: tests whose tables hold Decimal128 and UUID columns, which nx-27017 does not keep
    DECIMAL_TESTS = (
        "test_portable_types_round_trip",
        "test_reflection_gives_back_the_table",
        "test_full_load_moves_every_row",
    )

    @pytest.fixture
    def conformance_endpoint(
        self, mongo: MongoServer, mongo_url: str, request: pytest.FixtureRequest
    ) -> Iterator[Endpoint]:
        if mongo.deviates("decimal128") and request.node.originalname in self.DECIMAL_TESTS:
            reason = f"{mongo.deviations['decimal128']}; {mongo.deviations['binary-subtypes']}"
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
        with rk.endpoint(mongo_url) as ep:
            yield ep
