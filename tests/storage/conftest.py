"""The storage fixture: a fresh, empty prefix on each backend, for the conformance suite.

The servers themselves (moto_server, azurite, fake-gcs-server) are session fixtures in
tests/conftest.py, shared with the command-line tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from bika.storage import Storage, open_storage

from .servers import BUCKET, azure_settings, gcs_settings, s3_settings

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
