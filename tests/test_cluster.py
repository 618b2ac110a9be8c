"""Throwaway PostgreSQL clusters start, answer, refuse strangers and vanish without a trace."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from bika import scratch
from bika.errors import ConfigError, PostgresError
from bika.postgres import binaries
from bika.postgres.cluster import Cluster, start_cluster

NewDatabase = Callable[[Cluster], str]


@pytest.mark.parametrize(("fixture", "expected"), [("pg18", 18), ("pg15", 15)])
def test_each_cluster_runs_the_postgresql_major_it_was_built_from(
    request: pytest.FixtureRequest, fixture: str, expected: int
) -> None:
    cluster: Cluster = request.getfixturevalue(fixture)
    [(version, server_version)] = cluster.query(
        "SELECT version(), current_setting('server_version')"
    )
    assert version.startswith(f"PostgreSQL {expected}.")
    assert binaries.major(cluster.version) == expected
    assert server_version.startswith(cluster.version)


def test_cluster_listens_only_on_loopback_with_fast_settings(pg: Cluster) -> None:
    settings = dict(
        pg.query(
            "SELECT name, setting FROM pg_settings WHERE name IN "
            "('listen_addresses', 'fsync', 'wal_level', 'unix_socket_directories',"
            " 'data_checksums')"
        )
    )
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["fsync"] == "off"
    assert settings["wal_level"] == "minimal"
    assert settings["unix_socket_directories"] == str(pg.socket_dir)
    assert settings["data_checksums"] == "off"  # 18's initdb turns them on unless told


def test_wrong_password_is_refused(pg: Cluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.url(password="not-the-password"), connect_timeout=10).close()


def test_missing_password_is_refused(pg: Cluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="no password supplied"):
        psycopg.connect(pg.url(password=""), connect_timeout=10).close()


def test_url_percent_encodes_user_password_and_database(pg: Cluster) -> None:
    user, password = "o'brien@bank", "p@ss:w/rd %?#&'é"
    pg.execute(f"CREATE ROLE \"{user}\" LOGIN PASSWORD '{password.replace(chr(39), chr(39) * 2)}'")
    try:
        url = pg.url("my db/1", user=user, password=password)
        parts = urlsplit(url)
        assert (unquote(parts.username or ""), unquote(parts.password or "")) == (user, password)
        assert parts.path == "/my%20db%2F1"
        pg.create_database("my db/1")
        with psycopg.connect(url, connect_timeout=10) as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
        assert row == (user, "my db/1")
    finally:
        pg.drop_database("my db/1")
        pg.execute(f'DROP ROLE IF EXISTS "{user}"')


def test_new_database_is_empty_and_reachable(pg: Cluster, new_database: NewDatabase) -> None:
    url = new_database(pg)
    with psycopg.connect(url, connect_timeout=10) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)


def test_remove_deletes_the_folder_and_frees_the_port() -> None:
    cluster = start_cluster()
    folder, port = cluster.data_dir.parent, cluster.port
    assert cluster.query("SELECT 1") == [(1,)]
    assert cluster.url().startswith(f"postgresql://postgres@127.0.0.1:{port}/")

    cluster.remove()

    assert not folder.exists()
    assert not cluster.running
    with socket.socket() as probe:
        # SO_REUSEADDR as PostgreSQL itself binds: closed connections may linger in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))


def test_context_manager_stops_and_removes_on_error() -> None:
    with pytest.raises(RuntimeError), start_cluster(password="pw") as cluster:
        raise RuntimeError("boom")
    assert not cluster.data_dir.parent.exists()
    assert not cluster.running


def test_server_that_cannot_start_says_why_and_leaves_nothing() -> None:
    # Not tmp_path: pytest makes it 0700, which the server's OS user cannot enter as root.
    parent = Path(tempfile.mkdtemp(prefix="bika-test-"))
    parent.chmod(0o755)
    try:
        with pytest.raises(PostgresError, match=r"did not start.*shared_buffers"):
            start_cluster(parent=parent, settings={"shared_buffers": "lots"})
        # only this process's scratch folder is left, holding no cluster
        [folder] = parent.iterdir()
        assert folder == scratch.folder(parent)
        assert not list(folder.glob("pg-*"))
    finally:
        shutil.rmtree(parent)


def test_query_errors_name_the_database_and_the_reason(pg: Cluster) -> None:
    with pytest.raises(
        PostgresError, match=r"'postgres'.*relation \"no_such_table\" does not exist"
    ):
        pg.query("SELECT * FROM no_such_table")


def test_bin_dir_without_pg_dump_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds no pg_dump"):
        binaries.find_bin_dir(tmp_path)


def test_versions_are_parsed_from_the_programs() -> None:
    assert (
        binaries.major(binaries.tool_version(binaries.tool("pg_dump", binaries.find_bin_dir())))
        == 18
    )
    assert binaries.major("15.18 (Debian 15.18-0+deb12u1)") == 15
