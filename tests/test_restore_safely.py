"""Restore, safely: preflight refusals, --clean, selective and file restores, dry runs, picking a
backup by time, and restores across PostgreSQL versions, against real servers.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import awkward
import pytest

from bika.cli.restore_cmd import parse_time
from bika.crypto import generate_identity, load_identities
from bika.errors import BackupNotFound
from bika.operations.backup import BackupOptions, take_backup
from bika.operations.restore import (
    PreflightRefused,
    RestoreFailed,
    RestoreOptions,
    RestorePlan,
    RestoreStep,
    Selection,
    clean_sql,
    find_backup_before,
    find_latest_backup,
    restore_backup,
)
from bika.postgres import binaries, sample
from bika.postgres.archive import read_toc
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo
from bika.postgres.preflight import ArchiveToc, TocEntry
from bika.repository import Manifest, Repository
from bika.storage.local import LocalStorage

from helpers import PG15_BIN, run_bika


class Backup:
    """A repository holding one backup of a source database that stays up for comparisons."""

    def __init__(self, repo: Repository, manifest: Manifest, key: Path, source: str) -> None:
        self.repo = repo
        self.manifest = manifest
        self.key = key
        self.source = source
        self.identities = load_identities(key)

    def restore(self, target: str, **options: Any) -> Any:
        return restore_backup(
            self.repo,
            self.manifest,
            ConnInfo.parse(target),
            self.identities,
            RestoreOptions(**options),
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"BIKA_REPO": self.repo.url, "BIKA_IDENTITY": str(self.key)}
        return run_bika("restore", *args, env=env, timeout=120)


def _backup(cluster: Cluster, folder: Path, scripts: tuple[str, ...]) -> Iterator[Backup]:
    name = f"src_{uuid.uuid4().hex[:8]}"
    url = cluster.create_database(name)
    for script in scripts:
        sample.load(url, script)
    key = folder / "key.txt"
    repo = Repository.init(LocalStorage(folder / "repo"), [generate_identity(key)])
    manifest = take_backup(repo, ConnInfo.parse(url), BackupOptions())
    yield Backup(repo, manifest, key, url)
    cluster.drop_database(name)


@pytest.fixture(scope="module")
def backup18(pg18: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backup]:
    """The awkward schema and the savings-group database, from PostgreSQL 18."""
    folder = tmp_path_factory.mktemp("restore18")
    yield from _backup(pg18, folder, (awkward.SQL, sample.SAVINGS_GROUP_SQL))


@pytest.fixture(scope="module")
def backup15(pg15: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backup]:
    """The same, from PostgreSQL 15, dumped by pg_dump 18."""
    folder = tmp_path_factory.mktemp("restore15")
    yield from _backup(pg15, folder, (awkward.SQL, sample.SAVINGS_GROUP_SQL))


@pytest.fixture
def fresh(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Names of databases that do not exist yet, dropped after the test if a restore made them."""
    made: list[tuple[Cluster, str]] = []

    def name(cluster: Cluster) -> str:
        db = f"t_{uuid.uuid4().hex[:10]}"
        made.append((cluster, db))
        return cluster.url(db)

    yield name
    for cluster, db in made:
        cluster.drop_database(db)


def relations(cluster: Cluster, url: str) -> set[tuple[str, str, str]]:
    """(schema, name, relkind) of every user relation of the database at url."""
    rows = cluster.query(
        "SELECT n.nspname, c.relname, c.relkind::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
        ConnInfo.parse(url).database,
    )
    return {(str(s), str(n), str(k)) for s, n, k in rows}


def database_exists(cluster: Cluster, url: str) -> bool:
    name = ConnInfo.parse(url).database
    return bool(cluster.query(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"))


def scalar(cluster: Cluster, url: str, query: str) -> Any:
    return cluster.query(query, ConnInfo.parse(url).database)[0][0]


# -- refusing and cleaning ----------------------------------------------------------------


def test_restore_refuses_a_non_empty_target_without_clean_and_changes_nothing(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    backup18.restore(target, create=True)
    pg18.execute("DELETE FROM public.texts WHERE id > 3", ConnInfo.parse(target).database)
    before = relations(pg18, target)

    done = backup18.cli(backup18.manifest.id, "--to", target)

    assert done.returncode == 1
    assert "is not empty" in done.stderr and "--clean" in done.stderr
    assert relations(pg18, target) == before
    assert scalar(pg18, target, "SELECT count(*) FROM public.texts") == 3


def test_clean_replaces_the_backups_objects_and_keeps_the_targets_own(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    backup18.restore(target, create=True)
    db = ConnInfo.parse(target).database
    pg18.execute(
        "DELETE FROM public.texts WHERE id > 3; UPDATE public.groups SET name = name || '!';"
        " CREATE TABLE public.notes (note text); INSERT INTO public.notes VALUES ('mine')",
        db,
    )

    report = backup18.restore(target, clean=True)

    assert report.ok and len(report.checks) == len(backup18.manifest.tables)
    assert scalar(pg18, target, "SELECT count(*) FROM public.groups WHERE name LIKE '%!'") == 0
    assert scalar(pg18, target, "SELECT note FROM public.notes") == "mine"


def test_clean_that_cannot_drop_lists_the_error_and_leaves_the_target_as_it_was(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    backup18.restore(target, create=True)
    db = ConnInfo.parse(target).database
    pg18.execute("CREATE VIEW public.mine AS SELECT name FROM public.groups", db)
    pg18.execute("DELETE FROM public.texts WHERE id > 3", db)

    done = backup18.cli("--latest", "--to", target, "--clean")

    assert done.returncode == 1
    assert "cannot drop table public.groups because other objects depend on it" in done.stderr
    assert "view public.mine depends on table public.groups" in done.stderr
    assert scalar(pg18, target, "SELECT count(*) FROM public.mine") == 40
    assert scalar(pg18, target, "SELECT count(*) FROM public.texts") == 3


# -- selective restores -------------------------------------------------------------------


def test_table_restore_brings_exactly_the_tables_and_their_owned_sequences(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)

    report = backup18.restore(target, create=True, tables=["loans", "public.repayments"])

    assert relations(pg18, target) == {
        ("public", "loans", "r"),
        ("public", "loans_loan_id_seq", "S"),  # serial: OWNED BY, with the column default
        ("public", "repayments", "r"),
        ("public", "repayments_repayment_id_seq", "S"),  # identity
        ("public", "receipt_no_seq", "S"),  # CREATE SEQUENCE … OWNED BY repayments.receipt_no
    }
    assert {c.table for c in report.checks} == {"public.loans", "public.repayments"}
    assert report.ok
    for seq in ("loans_loan_id_seq", "repayments_repayment_id_seq", "receipt_no_seq"):
        query = f"SELECT last_value, is_called FROM public.{seq}"
        assert pg18.query(query, ConnInfo.parse(target).database) == pg18.query(
            query, ConnInfo.parse(backup18.source).database
        )
    # the foreign key between the two came along; the one to members (not restored) did not
    fks = pg18.query(
        "SELECT conname FROM pg_constraint WHERE contype = 'f'", ConnInfo.parse(target).database
    )
    assert fks == [("repayments_loan_id_fkey",)]
    assert any("loans_member_id_fkey" in f.message for f in report.warnings)
    nextval = "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = 'loans'::regclass"
    assert "loans_loan_id_seq" in scalar(pg18, target, nextval)


def test_schema_restore_brings_exactly_that_schema(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)

    done = backup18.cli(
        backup18.manifest.id[:18], "--to", target, "--create", "--schema", "Ibimina Ltd"
    )

    assert done.returncode == 0, done.stderr
    assert relations(pg18, target) == {
        ("Ibimina Ltd", "Members", "r"),
        ("Ibimina Ltd", "Members_MemberID_seq", "S"),
        ("Ibimina Ltd", "members", "r"),
        ("Ibimina Ltd", "Active Members", "v"),
    }
    assert "all row counts match" in done.stdout
    assert "Members_account_no_fkey" in done.stderr  # left out: it needs ledger.accounts


def test_table_restore_into_the_live_database_refuses_an_existing_table_without_clean(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    backup18.restore(target, create=True)
    db = ConnInfo.parse(target).database
    pg18.execute("DELETE FROM public.texts WHERE id > 3", db)

    with pytest.raises(PreflightRefused, match=r"public\.texts.*already exist.*--clean"):
        backup18.restore(target, tables=["public.texts"])
    report = backup18.restore(target, tables=["public.texts"], clean=True)

    assert [(c.table, c.ok) for c in report.checks] == [("public.texts", True)]


def test_clean_of_one_schema_also_recreates_the_backups_views_over_it(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    backup18.restore(target, create=True)
    db = ConnInfo.parse(target).database
    pg18.execute("UPDATE ledger.audit_log SET op = 'x'; DELETE FROM ledger.payments_2023", db)
    before = relations(pg18, target)
    indexes = "SELECT schemaname, indexname, indexdef FROM pg_indexes ORDER BY 1, 2"
    indexes_before = pg18.query(indexes, db)

    report = backup18.restore(target, schemas=["ledger"], clean=True)

    assert report.ok
    assert {c.table.split(".")[0] for c in report.checks} == {"ledger"}
    # public.account_overview reads ledger.accounts: it had to go and come back
    assert any("public.account_overview" in f.message for f in report.warnings)
    assert relations(pg18, target) == before
    assert pg18.query(indexes, db) == indexes_before
    assert scalar(pg18, target, "SELECT count(*) FROM ledger.audit_log WHERE op = 'x'") == 0
    assert scalar(pg18, target, "SELECT count(*) FROM public.payments") == 240
    assert scalar(pg18, target, "SELECT count(*) FROM public.account_overview") > 0


def test_schema_only_then_data_only_restores_every_row(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    # ledger.accounts carries a NOT VALID check that its own rows break: a data-only load
    # into it fails by design, so it stays out (and with it what needs it)
    schema = backup18.restore(
        target, create=True, schema_only=True, exclude_tables=["ledger.accounts"]
    )
    assert schema.ok and all(not c.rows_compared for c in schema.checks)
    assert scalar(pg18, target, "SELECT count(*) FROM public.groups") == 0

    data = backup18.restore(target, data_only=True, exclude_tables=["ledger.accounts"])

    assert data.ok and len(data.checks) == len(backup18.manifest.tables) - 1
    assert ("ledger", "accounts", "r") not in relations(pg18, target)


def test_data_only_into_an_empty_database_is_refused_naming_the_missing_tables(
    pg18: Cluster, backup18: Backup, new_database: Any
) -> None:
    target = new_database(pg18)

    done = backup18.cli("--latest", "--to", target, "--data-only")

    assert done.returncode == 1
    assert "--data-only needs the tables in the target" in done.stderr
    assert relations(pg18, target) == set()


def test_failed_restore_lists_its_errors_exits_non_zero_and_rolls_back(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    backup18.restore(target, create=True)

    done = backup18.cli(
        "--latest",
        "--to",
        target,
        "--data-only",
        "--table",
        "public.groups",
        "--table",
        "public.texts",
    )

    assert done.returncode == 1
    assert "TABLE DATA public.groups: " in done.stderr, done.stderr
    assert "duplicate key value violates unique constraint" in done.stderr
    assert "groups_pkey" in done.stderr or "groups_name_key" in done.stderr
    assert scalar(pg18, target, "SELECT count(*) FROM public.groups") == 40
    assert scalar(pg18, target, "SELECT count(*) FROM public.texts") == next(
        t.rows for t in backup18.manifest.tables if t.qualified == "public.texts"
    )


# -- dry run and files --------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_changes_nothing(
    pg18: Cluster, backup18: Backup, fresh: Any, new_database: Any
) -> None:
    missing = fresh(pg18)
    done = backup18.cli("--latest", "--to", missing, "--create", "--dry-run")

    assert done.returncode == 0, done.stderr
    assert not database_exists(pg18, missing)
    assert "dry run, nothing changes" in done.stdout
    assert "create database" in done.stdout
    assert "load: 20 tables" in done.stdout
    assert "public.groups" in done.stdout and "40" in done.stdout
    assert "ok" in done.stdout and "pg_restore 18" in done.stdout

    empty = new_database(pg18)
    done = backup18.cli("--latest", "--to", empty, "--dry-run", "--table", "loans")
    assert done.returncode == 0, done.stderr
    assert relations(pg18, empty) == set()
    assert "loans_loan_id_seq" in done.stdout
    assert "left out: FK CONSTRAINT public.loans loans_member_id_fkey" in done.stdout


def test_dry_run_of_a_refused_restore_shows_why_and_exits_non_zero(
    pg18: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg18)
    backup18.restore(target, create=True)

    done = backup18.cli("--latest", "--to", target, "--dry-run", "--table", "nope")

    assert done.returncode == 1
    assert "--table nope matches nothing" in done.stdout
    assert "refused" in done.stderr


def test_to_file_sql_is_private_and_loads_into_postgresql_15_with_stock_psql(
    pg15: Cluster, backup18: Backup, new_database: Any, tmp_path: Path
) -> None:
    out = tmp_path / "handover.sql"

    done = backup18.cli("--latest", "--to-file", str(out))

    assert done.returncode == 0, done.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    text = out.read_text()
    assert "CREATE TABLE public.groups" in text
    assert "\nSET transaction_timeout = 0;" not in text  # guarded: PostgreSQL 15 rejects it
    target = new_database(pg15)
    loaded = subprocess.run(
        [str(PG15_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", target, "-f", str(out)],
        capture_output=True,
        text=True,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert scalar(pg15, target, "SELECT count(*) FROM public.groups") == 40


def test_to_file_dump_restores_with_stock_pg_restore_and_is_never_overwritten(
    pg18: Cluster, backup18: Backup, new_database: Any, tmp_path: Path
) -> None:
    out = tmp_path / "handover.dump"
    assert backup18.cli("--latest", "--to-file", str(out)).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600
    # like pg_dump's own -f output, the TOC says where each table's data is
    toc = read_toc(out.read_bytes())
    offsets = backup18.manifest.artifacts["database"].data_offsets
    assert toc is not None and offsets and toc.data_offsets == offsets
    target = new_database(pg18)
    pg_restore = binaries.tool("pg_restore", binaries.embedded_bin_dir())
    restored = subprocess.run(
        [str(pg_restore), "--exit-on-error", "-d", target, str(out)],
        capture_output=True,
        text=True,
    )
    assert restored.returncode == 0, restored.stderr
    assert scalar(pg18, target, "SELECT count(*) FROM public.members") == 1000
    written = out.read_bytes()

    again = backup18.cli("--latest", "--to-file", str(out))

    assert again.returncode == 1
    assert "already exists" in again.stderr and "never overwrites" in again.stderr
    assert out.read_bytes() == written
    refused = backup18.cli("--latest", "--to-file", str(tmp_path / "t.dump"), "--table", "loans")
    assert refused.returncode == 1 and "whole archive" in refused.stderr


def test_to_file_sql_with_a_selection_and_clean_drops_only_that(
    pg18: Cluster, backup18: Backup, fresh: Any, tmp_path: Path
) -> None:
    out = tmp_path / "texts.sql"
    assert (
        backup18.cli(
            "--latest", "--to-file", str(out), "--table", "public.texts", "--clean"
        ).returncode
        == 0
    )
    target = fresh(pg18)
    backup18.restore(target, create=True)
    db = ConnInfo.parse(target).database
    pg18.execute("DELETE FROM public.texts", db)

    loaded = subprocess.run(
        [
            str(binaries.tool("psql", binaries.embedded_bin_dir())),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            target,
            "-f",
            str(out),
        ],
        capture_output=True,
        text=True,
    )

    assert loaded.returncode == 0, loaded.stderr
    assert "DROP TABLE IF EXISTS public.groups" not in out.read_text()
    assert scalar(pg18, target, "SELECT count(*) FROM public.texts") > 0


# -- versions -----------------------------------------------------------------------------


def test_older_target_is_refused_without_force_and_restored_with_it(
    pg15: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg15)

    done = backup18.cli("--latest", "--to", target, "--create")

    assert done.returncode == 1
    assert "PostgreSQL 18" in done.stderr and "15" in done.stderr and "--force" in done.stderr
    assert not database_exists(pg15, target)

    report = backup18.restore(target, create=True, force=True)

    assert report.ok and len(report.checks) == len(backup18.manifest.tables)
    assert any(f.check == "version" and f.level == "warn" for f in report.preflight)


@pytest.mark.parametrize("jobs", [1, 2])
def test_pg15_backup_restores_into_pg15_with_pg_restore_18(
    pg15: Cluster, backup15: Backup, fresh: Any, jobs: int
) -> None:
    target = fresh(pg15)

    report = backup15.restore(target, create=True, jobs=jobs)

    assert report.ok and len(report.checks) == len(backup15.manifest.tables)
    # and again over itself, which takes the --clean path through psql
    again = backup15.restore(target, clean=True, jobs=jobs)
    assert again.ok


@pytest.mark.parametrize(
    ("server", "jobs", "clean"),
    [("pg18", 1, False), ("pg18", 2, False), ("pg15", 1, False), ("pg18", 1, True)],
    ids=["streamed", "parallel", "through-psql", "clean-through-psql"],
)
def test_restore_reports_pg_restores_steps_as_they_happen(
    request: pytest.FixtureRequest,
    backup18: Backup,
    fresh: Any,
    server: str,
    jobs: int,
    clean: bool,
) -> None:
    cluster: Cluster = request.getfixturevalue(server)
    target = fresh(cluster)
    if clean:
        backup18.restore(target, create=True)
    steps: list[RestoreStep] = []

    restore_backup(
        backup18.repo,
        backup18.manifest,
        ConnInfo.parse(target),
        backup18.identities,
        RestoreOptions(create=not clean, clean=clean, jobs=jobs, force=server == "pg15"),
        on_step=steps.append,
    )

    assert steps, "pg_restore's --verbose lines became no steps"
    assert [s.done for s in steps] == sorted(s.done for s in steps)
    assert all(0 < s.done <= s.total for s in steps)
    assert any(s.doing.startswith("processing data for table ") for s in steps)


# -- choosing the backup ------------------------------------------------------------------


def test_before_picks_the_newest_backup_that_started_before(
    pg18: Cluster, new_database: Any, tmp_path: Path
) -> None:
    source = new_database(pg18)
    pg18.execute(
        "CREATE TABLE t (x int); INSERT INTO t VALUES (1)", ConnInfo.parse(source).database
    )
    key = tmp_path / "key.txt"
    repo = Repository.init(LocalStorage(tmp_path / "repo"), [generate_identity(key)])
    first = take_backup(repo, ConnInfo.parse(source), BackupOptions())
    second = take_backup(repo, ConnInfo.parse(source), BackupOptions())
    third = take_backup(repo, ConnInfo.parse(source), BackupOptions())

    assert find_backup_before(repo, third.started_at) == second.id
    assert find_backup_before(repo, second.started_at + timedelta(microseconds=1)) == second.id
    assert find_backup_before(repo, second.started_at) == first.id
    with pytest.raises(BackupNotFound, match="no backup started before"):
        find_backup_before(repo, first.started_at)
    assert find_latest_backup(repo) == third.id

    backup = Backup(repo, first, key, source)
    when = f"{third.started_at:%Y-%m-%d %H:%M:%S.%f}"
    # (--clean into the backup's own source database asks for --force)
    done = backup.cli("--before", when, "--to", source, "--dry-run", "--clean", "--force")
    assert done.returncode == 0, done.stderr
    assert f"plan: {second.id}" in done.stdout
    done = backup.cli("--latest", "--to", source, "--dry-run", "--clean", "--force")
    assert f"plan: {third.id}" in done.stdout
    done = backup.cli("--before", "2001-01-01 00:00", "--to", source, "--dry-run")
    assert done.returncode == 1 and "no backup started before 2001-01-01" in done.stderr


# -- privileges ---------------------------------------------------------------------------


def test_preflight_names_what_a_plain_role_may_not_do(
    pg18: Cluster, backup18: Backup, new_database: Any
) -> None:
    target = new_database(pg18)
    role = f"restorer_{uuid.uuid4().hex[:6]}"
    pg18.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    try:
        as_role = pg18.url(ConnInfo.parse(target).database, user=role, password="pw")

        with pytest.raises(PreflightRefused) as refused:
            backup18.restore(as_role, dry_run=True)

        said = str(refused.value)
        assert f"role {role} may not create schemas" in said
        assert f"role {role} may not give objects to postgres" in said
        with pytest.raises(PreflightRefused, match=r"may not create objects in schema\(s\) public"):
            backup18.restore(as_role, dry_run=True, no_owner=True, tables=["texts"])
    finally:
        pg18.execute(f"DROP ROLE {role}")


def test_restore_failure_of_the_load_itself_is_a_restore_failed_with_each_error(
    pg15: Cluster, backup18: Backup, fresh: Any
) -> None:
    target = fresh(pg15)
    backup18.restore(target, create=True, force=True, tables=["public.texts"])
    pg15.execute(
        "INSERT INTO public.texts (label) VALUES ('extra')", ConnInfo.parse(target).database
    )

    with pytest.raises(RestoreFailed) as failed:
        backup18.restore(target, force=True, data_only=True, tables=["public.texts"])

    assert any("duplicate key" in e and "TABLE DATA public.texts" in e for e in failed.value.errors)


# -- pure parts ---------------------------------------------------------------------------


def test_table_names_may_be_plain_qualified_or_quoted() -> None:
    from bika.operations.restore_selection import _name_candidates

    assert _name_candidates("groups") == [(None, "groups")]
    assert ("public", "groups") in _name_candidates("public.groups")
    assert ("Ibimina Ltd", "Members") in _name_candidates("Ibimina Ltd.Members")
    assert _name_candidates('"Ibimina Ltd"."Odd ""quoted"" Name"') == [
        ("Ibimina Ltd", 'Odd "quoted" Name')
    ]


def test_before_is_utc_unless_the_time_says_otherwise() -> None:
    assert parse_time("2026-11-20 14:00") == datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    assert parse_time("2026-11-20T16:00+02:00") == datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    assert parse_time("2026-11-20") == datetime(2026, 11, 20, tzinfo=UTC)


def test_clean_drops_tables_foreign_keys_and_defaults_but_not_what_goes_with_a_table() -> None:
    def entry(i: int, desc: str, tag: str, drop: str, *deps: int) -> TocEntry:
        return TocEntry(
            dump_id=i,
            desc=desc,
            section=2,
            namespace="public",
            tag=tag,
            owner="postgres",
            dependencies=deps,
            drop=drop,
        )

    entries = [
        entry(1, "TABLE", "parent", "DROP TABLE public.parent;\n"),
        entry(2, "TABLE", "child", "DROP TABLE public.child;\n", 1),
        entry(3, "SEQUENCE", "parent_id_seq", "DROP SEQUENCE public.parent_id_seq;\n", 1),
        entry(
            4,
            "DEFAULT",
            "parent id",
            "ALTER TABLE public.parent ALTER COLUMN id DROP DEFAULT;\n",
            1,
            3,
        ),
        entry(
            5,
            "CONSTRAINT",
            "child child_pkey",
            "ALTER TABLE ONLY public.child DROP CONSTRAINT child_pkey;\n",
            2,
        ),
        entry(
            6,
            "FK CONSTRAINT",
            "child child_fk",
            "ALTER TABLE ONLY public.child DROP CONSTRAINT child_fk;\n",
            2,
            1,
        ),
        entry(7, "INDEX", "child_idx", "DROP INDEX public.child_idx;\n", 2),
    ]
    toc = ArchiveToc((1, 16, 0), "db", "18.6", "18.6", tuple(entries))
    plan = RestorePlan("b", "db", toc, Selection(entries, True, True), [], None, [], "18.6")

    assert clean_sql(plan).splitlines()[2:] == [
        "ALTER TABLE IF EXISTS ONLY public.child DROP CONSTRAINT IF EXISTS child_fk;",
        "ALTER TABLE IF EXISTS public.parent ALTER COLUMN id DROP DEFAULT;",
        "DROP SEQUENCE IF EXISTS public.parent_id_seq;",
        "DROP TABLE IF EXISTS public.child;",
        "DROP TABLE IF EXISTS public.parent;",
    ]
