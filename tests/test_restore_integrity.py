"""Restores never load the wrong data: the stored artifact is checked against its manifest
before a restore commits, row counts are judged inside the restore's transaction, and what a
backup cannot prove (another repository's folder, a broken manifest, wrong data offsets) is
reported as such, against real servers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bika.crypto import generate_identity, load_identities
from bika.operations.backup import BackupOptions, take_backup
from bika.operations.restore import RestoreOptions, RowsDiffer, restore_backup
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo
from bika.repository import Repository
from bika.storage.local import LocalStorage

from helpers import KeyedRepo, assert_clean_error, row_counts, run_bika

ARTIFACT = "database.pgdump.zst.age"


@dataclass
class Swapped:
    """Backups A and B of one database whose balances changed between them, in a repository
    where A's stored artifact has been replaced by B's."""

    repo: Path
    key: Path
    a: str
    b: str

    def restore(self, *args: str) -> object:
        return run_bika(
            "restore", self.a, "--repo", str(self.repo), "--identity", str(self.key), *args
        )


def _writable(path: Path) -> Path:
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def swapped(pg15: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Swapped]:
    folder = tmp_path_factory.mktemp("swapped")
    name = f"swap_{uuid.uuid4().hex[:8]}"
    url = pg15.create_database(name)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL);"
            " INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 200) g"
        )
    key = folder / "key.txt"
    repo = Repository.init(LocalStorage(folder / "repo"), [generate_identity(key)])
    a = take_backup(repo, ConnInfo.parse(url), BackupOptions(label="A")).id
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE accounts SET balance = 999 WHERE id % 2 = 0")
    b = take_backup(repo, ConnInfo.parse(url), BackupOptions(label="B")).id
    backups = folder / "repo" / "backups"
    _writable(backups / a / ARTIFACT).write_bytes((backups / b / ARTIFACT).read_bytes())
    yield Swapped(folder / "repo", key, a, b)
    pg15.drop_database(name)


def _balances(url: str) -> list[tuple[int, int]]:
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT balance, count(*) FROM accounts GROUP BY 1 ORDER BY 1")
        return [(int(b), int(n)) for b, n in rows.fetchall()]


@pytest.mark.parametrize("target", ["pg18", "pg15"])
def test_one_job_restore_of_a_replaced_artifact_rolls_back_and_names_verify(
    target: str, swapped: Swapped, request: pytest.FixtureRequest
) -> None:
    cluster: Cluster = request.getfixturevalue(target)
    name = f"t_{uuid.uuid4().hex[:8]}"
    url = cluster.create_database(name)
    try:
        # the target holds rows of its own; --clean's drops run inside the restore's
        # transaction, so they are rolled back with the load
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(
                "CREATE TABLE accounts (id int, balance int); INSERT INTO accounts VALUES (1, 7)"
            )

        done = swapped.restore("--to", url, "--clean")

        assert_clean_error(done, "not the one the manifest describes", "bika verify")
        assert "nothing was committed" in done.stderr
        assert _balances(url) == [(7, 1)]
    finally:
        cluster.drop_database(name)


def test_one_job_restore_with_create_of_a_replaced_artifact_leaves_no_database(
    pg18: Cluster, swapped: Swapped
) -> None:
    name = f"t_{uuid.uuid4().hex[:8]}"

    done = swapped.restore("--to", pg18.url(name), "--create")

    assert_clean_error(done, "not the one the manifest describes", "has been dropped")
    assert not pg18.query(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")


def test_a_restore_that_needs_only_part_of_the_archive_still_checks_all_of_it(
    pg18: Cluster, swapped: Swapped
) -> None:
    name = f"t_{uuid.uuid4().hex[:8]}"

    # pg_restore stops reading after the table of contents: bika reads on to the end
    done = swapped.restore("--to", pg18.url(name), "--create", "--schema-only")

    assert_clean_error(done, "not the one the manifest describes")
    assert not pg18.query(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")


@pytest.mark.parametrize("name", ["a.sql", "a.dump"])
def test_export_of_a_replaced_artifact_leaves_no_file(
    name: str, swapped: Swapped, tmp_path: Path
) -> None:
    out = tmp_path / name

    done = swapped.restore("--to-file", str(out))

    assert_clean_error(done, "not the one the manifest describes", "bika verify")
    assert list(tmp_path.iterdir()) == []


def test_export_of_a_good_backup_to_sql_appears_only_when_complete(
    swapped: Swapped, tmp_path: Path
) -> None:
    out = tmp_path / "b.sql"

    done = run_bika(
        "restore",
        swapped.b,
        "--repo",
        str(swapped.repo),
        "--identity",
        str(swapped.key),
        "--to-file",
        str(out),
    )

    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["b.sql"]
    assert out.stat().st_mode & 0o777 == 0o600
    assert b"COPY public.accounts" in out.read_bytes()


def test_rows_that_differ_from_the_manifest_roll_the_restore_back(
    pg18: Cluster, swapped: Swapped, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(swapped.repo, tmp_path / "repo"))
    manifest = _writable(copy / "backups" / swapped.b / "manifest.json")
    edited = json.loads(manifest.read_text())
    edited["tables"][0]["rows"] = 199
    manifest.write_text(json.dumps(edited))
    name = f"t_{uuid.uuid4().hex[:8]}"
    url = pg18.create_database(name)
    try:
        repo = Repository.open(LocalStorage(copy))
        with pytest.raises(RowsDiffer) as differ:
            restore_backup(
                repo,
                repo.manifest(swapped.b),
                ConnInfo.parse(url),
                load_identities(swapped.key),
                RestoreOptions(),
            )
        assert [(c.table, c.expected, c.restored) for c in differ.value.report.checks] == [
            ("public.accounts", 199, 200)
        ]
        assert "rolled back: the target is as it was" in str(differ.value)
        assert not pg18.query("SELECT 1 FROM pg_class WHERE relname = 'accounts'", name)

        done = run_bika(
            "restore", swapped.b, "--repo", str(copy), "--identity", str(swapped.key), "--to", url
        )
        assert_clean_error(done, "1 table(s) differ from the backup", "rolled back")
        assert "DIFFERS" in done.stdout
        assert not pg18.query("SELECT 1 FROM pg_class WHERE relname = 'accounts'", name)
    finally:
        pg18.drop_database(name)


# -- what a repository holds that it cannot vouch for ----------------------------------------


def _small_database(cluster: Cluster, new_database: Callable[[Cluster], str]) -> str:
    url = new_database(cluster)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE TABLE a (id int PRIMARY KEY, v text);"
            " CREATE TABLE b (id int PRIMARY KEY, v text);"
            " INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 50) g;"
            " INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 50) g"
        )
    return url


def _cli(repo: KeyedRepo, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_bika(command, *args, "--repo", str(repo.repo))


def _keyed(repo: KeyedRepo, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    return _cli(repo, command, *args, "--identity", str(repo.key))


def test_a_backup_folder_copied_in_from_another_repository_is_reported_as_such(
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    keyed_repo: KeyedRepo,
    tmp_path: Path,
) -> None:
    backup_id = keyed_repo.backup(_small_database(pg18, new_database))
    other_key = tmp_path / "other.txt"
    other = KeyedRepo(tmp_path / "other", other_key, generate_identity(other_key))
    assert (
        run_bika("init", "--repo", str(other.repo), "--recipient", other.recipient).returncode == 0
    )
    shutil.copytree(keyed_repo.repo / "backups" / backup_id, other.repo / "backups" / backup_id)

    listed = _cli(other, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    assert payload["backups"] == []
    assert [d["id"] for d in payload["damaged"]] == [backup_id]
    assert "another repository" in payload["damaged"][0]["reason"]
    assert "another repository" in _cli(other, "list").stderr

    verified = _keyed(other, "verify", "--read-data")
    assert verified.returncode == 1
    assert "copied in by hand" in verified.stderr
    assert "identity" not in verified.stderr
    assert f"0 of 1 backups verified with --read-data; failed: {backup_id}" in verified.stdout

    restored = _keyed(other, "restore", backup_id, "--to-file", str(tmp_path / "x.sql"))
    assert_clean_error(restored, "another repository", "bika copy")
    drilled = _keyed(other, "drill", backup_id)
    assert_clean_error(drilled, "another repository")

    # a copy made by `bika copy` keeps its repository_id and is this repository's own
    copied = run_bika(
        "copy", "--repo", str(keyed_repo.repo), "--to", str(tmp_path / "third"), "--init"
    )
    assert copied.returncode == 0, copied.stderr
    third = KeyedRepo(tmp_path / "third", keyed_repo.key, keyed_repo.recipient)
    assert [b["id"] for b in third.list()] == [backup_id]
    assert _keyed(third, "verify", "--read-data").returncode == 0
    # a copy made before copies were recorded is accepted after the next `bika copy` run
    shutil.rmtree(tmp_path / "third" / "copied-from")
    assert [d["id"] for d in json.loads(_cli(third, "list", "--json").stdout)["damaged"]] == [
        backup_id
    ]
    again = run_bika("copy", "--repo", str(keyed_repo.repo), "--to", str(tmp_path / "third"))
    assert again.returncode == 0, again.stderr
    assert [b["id"] for b in third.list()] == [backup_id]


def test_one_unreadable_manifest_is_shown_as_damaged_and_the_others_still_verify(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = _small_database(pg18, new_database)
    first, second = keyed_repo.backup(url), keyed_repo.backup(url)
    manifest = _writable(keyed_repo.repo / "backups" / first / "manifest.json")
    manifest.write_text(manifest.read_text().replace('"tables"', '"tables" ,,', 1))

    listed = _cli(keyed_repo, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    assert [b["id"] for b in payload["backups"]] == [second]
    (damaged,) = payload["damaged"]
    assert damaged["id"] == first and "manifest.json is damaged" in damaged["reason"]
    assert "pydantic" not in damaged["reason"] and "\n" not in damaged["reason"]
    shown = _cli(keyed_repo, "list")
    assert second in shown.stdout and f"DAMAGED {first}: its manifest.json" in shown.stderr

    verified = _cli(keyed_repo, "verify")
    assert verified.returncode == 1
    assert f"1 of 2 backups verified; failed: {first}" in verified.stdout
    assert "pydantic" not in verified.stderr
    assert_clean_error(_cli(keyed_repo, "show", first), "manifest.json is damaged")
    checked = _cli(keyed_repo, "check")
    assert f"backup {first} cannot be read: its manifest.json is damaged" in checked.stdout


def test_verify_read_data_checks_the_manifests_data_offsets(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    backup_id = keyed_repo.backup(_small_database(pg18, new_database))
    manifest = _writable(keyed_repo.repo / "backups" / backup_id / "manifest.json")
    data = json.loads(manifest.read_text())
    offsets = data["artifacts"]["database"]["data_offsets"]
    (one, first), (two, second) = list(offsets.items())[:2]
    offsets[one], offsets[two] = second, first
    manifest.write_text(json.dumps(data))

    verified = _keyed(keyed_repo, "verify", "--read-data")

    assert verified.returncode == 1
    assert "data offsets do not point at their data block" in verified.stderr


def test_a_backup_of_an_empty_database_restores_and_drills(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    backup_id = keyed_repo.backup(new_database(pg18))
    name = f"t_{uuid.uuid4().hex[:8]}"
    try:
        restored = _keyed(keyed_repo, "restore", backup_id, "--to", pg18.url(name), "--create")
        assert restored.returncode == 0, restored.stderr
    finally:
        pg18.drop_database(name)

    drilled = _keyed(keyed_repo, "drill", backup_id, "--target", pg18.url(), "--json")

    assert drilled.returncode == 0, drilled.stdout + drilled.stderr
    assert json.loads(drilled.stdout)["passed"] is True


def test_clean_into_the_backups_own_source_database_asks_for_force(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = _small_database(pg18, new_database)
    backup_id = keyed_repo.backup(url)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("INSERT INTO a VALUES (51, 'written since')")

    refused = _keyed(keyed_repo, "restore", backup_id, "--to", url, "--clean")

    assert_clean_error(refused, "the database this backup was taken of", "--force")
    assert "rows written since" in refused.stderr
    assert row_counts(url, (("public", "a"),)) == {"public.a": 51}
    forced = _keyed(keyed_repo, "restore", backup_id, "--to", url, "--clean", "--force")
    assert forced.returncode == 0, forced.stderr
    assert row_counts(url, (("public", "a"),)) == {"public.a": 50}


def _last_drill(repo: KeyedRepo) -> Any:
    return repo.list()[-1]["drill"]


def test_a_drill_that_cannot_read_its_backup_records_a_failed_drill(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    backup_id = keyed_repo.backup(_small_database(pg18, new_database))
    target = ("--target", pg18.url())
    assert _keyed(keyed_repo, "drill", backup_id, *target).returncode == 0
    assert _last_drill(keyed_repo)["passed"] is True

    wrong = tmp_path / "wrong.txt"
    generate_identity(wrong)
    drilled = _cli(keyed_repo, "drill", backup_id, *target, "--identity", str(wrong), "--json")
    assert drilled.returncode == 1
    assert "cannot decrypt" in json.loads(drilled.stdout)["problems"][0]
    assert _last_drill(keyed_repo)["passed"] is False

    (keyed_repo.repo / "backups" / backup_id / ARTIFACT).unlink()
    drilled = _keyed(keyed_repo, "drill", backup_id, *target, "--json")
    assert drilled.returncode == 1, drilled.stderr
    assert "cannot be read" in json.loads(drilled.stdout)["problems"][0]
    assert _last_drill(keyed_repo)["passed"] is False
    assert "✗ " in _cli(keyed_repo, "list").stdout


def test_a_drill_of_a_backup_with_damaged_globals_records_a_failed_drill(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    backup_id = keyed_repo.backup(_small_database(pg18, new_database))
    stored = _writable(keyed_repo.repo / "backups" / backup_id / "globals.sql.zst.age")
    data = bytearray(stored.read_bytes())
    data[-20] ^= 0x55
    stored.write_bytes(bytes(data))

    drilled = _keyed(keyed_repo, "drill", backup_id, "--json")

    assert drilled.returncode == 1, drilled.stderr
    record = json.loads(drilled.stdout)
    assert record["passed"] is False and "globals" in record["problems"][0]
    assert _last_drill(keyed_repo)["passed"] is False


def test_table_restore_brings_the_types_functions_and_sequences_it_needs(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(
            "CREATE SCHEMA kinds; CREATE TYPE kinds.mood AS ENUM ('calm', 'busy');"
            " CREATE DOMAIN public.short_name AS text CHECK (length(VALUE) < 40);"
            " CREATE FUNCTION public.default_note() RETURNS text LANGUAGE sql AS $$SELECT 'n'$$;"
            " CREATE SEQUENCE public.member_no;"
            " CREATE TABLE public.members (id int PRIMARY KEY, mood kinds.mood NOT NULL,"
            "  name public.short_name, note text DEFAULT public.default_note(),"
            "  no bigint DEFAULT nextval('public.member_no'));"
            " INSERT INTO public.members (id, mood, name)"
            "  VALUES (1, 'calm', 'a'), (2, 'busy', 'b');"
            " CREATE TABLE public.other (id int)"
        )
    backup_id = keyed_repo.backup(url)
    name = f"t_{uuid.uuid4().hex[:8]}"
    target = pg18.url(name)
    try:
        done = _keyed(
            keyed_repo, "restore", backup_id, "--to", target, "--create", "--table", "members"
        )

        assert done.returncode == 0, done.stderr
        assert "also restores" in done.stderr and "kinds.mood" in done.stderr
        assert row_counts(target, (("public", "members"),)) == {"public.members": 2}
        with psycopg.connect(target) as db:
            db.execute("INSERT INTO public.members (id, mood) VALUES (3, 'busy')")
            row = db.execute("SELECT note, no FROM public.members WHERE id = 3").fetchone()
            assert row == ("n", 3)  # the function, and the sequence with its value
            assert db.execute("SELECT to_regclass('public.other')").fetchone() == (None,)
    finally:
        pg18.drop_database(name)
