"""Shared fixtures: one PostgreSQL 18 (embedded) and one PostgreSQL 15 (Debian) per test session,
and the storage emulators (moto_server, azurite, fake-gcs-server) on 127.0.0.1.

A server that cannot start is an error, never a skip: the suite is only meaningful against all.
No test reaches a real cloud: inherited cloud settings are dropped and every credential chain's
metadata service points at a closed loopback port (helpers.offline_env).
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bika.crypto import generate_identity
from bika.postgres.cluster import Cluster, start_cluster

from helpers import PG15_BIN, KeyedRepo, Offsite, offline_env, run_bika
from storage.servers import (
    BUCKET,
    AwsUser,
    Server,
    azure_env,
    azurite_command,
    create_azure_container,
    create_gcs_bucket,
    create_s3_bucket,
    fake_gcs_command,
    gcs_env,
    s3_env,
    start_moto,
    start_moto_with_auth,
    start_server,
)

_offline = offline_env(dict(os.environ))
os.environ.clear()
os.environ.update(_offline)
# events of runs that could not reach their repository wait here, not in the user's home
os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp(prefix="bika-test-state-")
# A suite started in the background by a shell without job control (`make test &`) inherits
# SIGINT ignored, and so would every bika it starts: the Ctrl-C tests would see no Ctrl-C.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PASSWORD = "s3cret-pw"


@pytest.fixture(scope="session")
def pg18() -> Iterator[Cluster]:
    with start_cluster(password=PASSWORD) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg15() -> Iterator[Cluster]:
    with start_cluster(PG15_BIN, password=PASSWORD) as cluster:
        yield cluster


@pytest.fixture(params=["pg18", "pg15"])
def pg(request: pytest.FixtureRequest) -> Cluster:
    cluster: Cluster = request.getfixturevalue(request.param)
    return cluster


@pytest.fixture
def new_database(request: pytest.FixtureRequest) -> Iterator[Callable[[Cluster], str]]:
    """Create a fresh database named after the test in a cluster; return its URL.

    The databases are dropped after the test, so session clusters do not fill up.
    """
    made: list[tuple[Cluster, str]] = []
    stem = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:40]

    def make(cluster: Cluster) -> str:
        name = f"{stem}_{uuid.uuid4().hex[:8]}"
        made.append((cluster, name))
        return cluster.create_database(name)

    yield make
    for cluster, name in made:
        cluster.drop_database(name)


@pytest.fixture
def keyed_repo(tmp_path: Path) -> KeyedRepo:
    """A fresh local repository and the age key it encrypts to, initialised through the CLI."""
    key = tmp_path / "key.txt"
    recipient = generate_identity(key)
    repo = tmp_path / "repo"
    result = run_bika("init", "--repo", str(repo), "--recipient", recipient)
    assert result.returncode == 0, result.stderr
    return KeyedRepo(repo=repo, key=key, recipient=recipient)


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("storage-servers")


@pytest.fixture(scope="session")
def moto(server_logs: Path) -> Iterator[Server]:
    server = start_moto(server_logs)
    try:
        create_s3_bucket(server.endpoint, BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_with_auth(server_logs: Path) -> Iterator[tuple[Server, AwsUser]]:
    """A second moto_server, one that checks credentials (the main one accepts any)."""
    server, user = start_moto_with_auth(server_logs, BUCKET)
    try:
        yield server, user
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(server_logs: Path) -> Iterator[Server]:
    server = start_server("azurite", azurite_command, server_logs)
    try:
        create_azure_container(server.endpoint, BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_gcs(server_logs: Path) -> Iterator[Server]:
    server = start_server("fake-gcs-server", fake_gcs_command, server_logs)
    try:
        create_gcs_bucket(server.endpoint, BUCKET)
        yield server
    finally:
        server.stop()


OFFSITE_BACKENDS = ["s3", "azure", "gcs"]


@pytest.fixture
def offsite(request: pytest.FixtureRequest) -> Callable[[str], Offsite]:
    """A fresh repository URL on an emulated cloud, and the environment a user would set for it
    (AWS_* variables, an Azure connection string, STORAGE_EMULATOR_HOST)."""

    def make(backend: str) -> Offsite:
        prefix = f"cli-{uuid.uuid4().hex[:10]}"
        if backend == "s3":
            server: Server = request.getfixturevalue("moto")
            return Offsite(backend, f"s3://{BUCKET}/{prefix}", s3_env(server.endpoint), server)
        if backend == "azure":
            server = request.getfixturevalue("azurite")
            return Offsite(backend, f"az://{BUCKET}/{prefix}", azure_env(server.endpoint), server)
        if backend == "gcs":
            server = request.getfixturevalue("fake_gcs")
            return Offsite(backend, f"gs://{BUCKET}/{prefix}", gcs_env(server.endpoint), server)
        raise ValueError(backend)

    return make


# Fixtures that start a real server (PostgreSQL or a storage emulator), directly or through
# another fixture. A test that needs none of them is in the fast tier (`make test-fast`).
SERVER_FIXTURES = {
    "pg18",
    "pg15",
    "pg",
    "moto",
    "moto_with_auth",
    "azurite",
    "fake_gcs",
    "offsite",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = set(getattr(item, "fixturenames", ())) & SERVER_FIXTURES
        if needs or item.get_closest_marker("server"):
            item.add_marker(pytest.mark.server)
