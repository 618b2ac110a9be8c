"""Shared fixtures: one PostgreSQL 18 (embedded) and one PostgreSQL 15 (Debian) per test session.

A server that cannot start is an error, never a skip: the suite is only meaningful against both.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bika.crypto import generate_identity
from bika.postgres.cluster import Cluster, start_cluster

from helpers import KeyedRepo, run_bika

PASSWORD = "s3cret-pw"
# Debian's postgresql-15 package; BIKA_TEST_PG15_BIN points elsewhere on other systems.
PG15_BIN = Path(os.environ.get("BIKA_TEST_PG15_BIN", "/usr/lib/postgresql/15/bin"))


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
