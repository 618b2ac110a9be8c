"""Session fixtures: moto_server, azurite and fake-gcs-server, each with a bucket or container.

A server that cannot start fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bika.storage import Storage, open_storage

from .servers import (
    BUCKET,
    AwsUser,
    Server,
    azure_request,
    azure_settings,
    azurite_command,
    create_gcs_bucket,
    create_s3_bucket,
    fake_gcs_command,
    free_port,
    gcs_settings,
    s3_settings,
    start_moto,
    start_moto_with_auth,
    start_server,
)


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
    port = free_port()
    server = start_server("azurite", azurite_command(port), port, server_logs)
    try:
        azure_request(server.endpoint, "PUT", BUCKET, {"restype": "container"})
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fake_gcs(server_logs: Path) -> Iterator[Server]:
    port = free_port()
    server = start_server("fake-gcs-server", fake_gcs_command(port), port, server_logs)
    try:
        create_gcs_bucket(server.endpoint, BUCKET)
        yield server
    finally:
        server.stop()


BACKENDS = ["local", "s3", "azure", "gcs"]


@pytest.fixture
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Storage]:
    """Opens a fresh, empty repository prefix on the named backend."""

    def make(backend: str) -> Storage:
        prefix = f"t-{uuid.uuid4().hex[:12]}"
        if backend == "local":
            return open_storage(str(tmp_path / prefix))
        if backend == "s3":
            server = request.getfixturevalue("moto")
            return open_storage(f"s3://{BUCKET}/{prefix}", s3_settings(server.endpoint))
        if backend == "azure":
            server = request.getfixturevalue("azurite")
            return open_storage(f"az://{BUCKET}/{prefix}", azure_settings(server.endpoint))
        if backend == "gcs":
            server = request.getfixturevalue("fake_gcs")
            return open_storage(f"gs://{BUCKET}/{prefix}", gcs_settings(server.endpoint))
        raise ValueError(backend)

    return make


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, make_storage: Callable[[str], Storage]) -> Storage:
    return make_storage(str(request.param))
