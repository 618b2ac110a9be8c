"""Restore drills: a clean backup is proven table by table, and any difference fails the drill
with the table named; the record lands in drills/ and shows in list and show.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import awkward
import psycopg
import pytest

from bika.crypto import load_identities
from bika.operations.drill import (
    LOAD_POLL_SECONDS,
    DrillOptions,
    DrillOutcome,
    LoadWatcher,
    blocking_steps,
    cluster_settings,
    compare_objects,
    dependents,
    dump_encoding,
    loaded_tables,
    run_drill,
    table_result,
    unblocked,
    without_role,
)
from bika.postgres import sample
from bika.postgres.archive import TocEntry, row_frame
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo
from bika.postgres.fingerprint import TableHasher, fingerprint_tables
from bika.repository import Repository
from bika.repository.drills import drill_history
from bika.storage.local import LocalStorage

from helpers import KeyedRepo, run_bika, run_bika_json, wait_for

# -- with servers -------------------------------------------------------------------------


def _drill(keyed_repo: KeyedRepo, *args: str) -> tuple[int, dict[str, Any]]:
    return run_bika_json(
        "drill", *args, "--repo", str(keyed_repo.repo), "--identity", str(keyed_repo.key)
    )


def _api_drill(keyed_repo: KeyedRepo, backup_id: str, options: DrillOptions) -> DrillOutcome:
    repo = Repository.open(LocalStorage(keyed_repo.repo))
    return run_drill(repo, repo.manifest(backup_id), load_identities(keyed_repo.key), options)


def test_drill_proves_a_clean_backup_in_a_throwaway_cluster(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    sample.load(url, awkward.SQL)
    backup_id = keyed_repo.backup(url)

    code, record = _drill(keyed_repo, "--latest")

    assert code == 0, record["problems"]
    assert record["passed"] is True and record["backup_id"] == backup_id
    assert record["target"] == {
        "kind": "embedded",
        "server_version": record["tools"]["server"],
        "host_hash": None,
        "database": "bika_drill",
    }
    assert record["tables_checked"] == len(awkward.TABLES)
    assert record["tables"] == [] and record["problems"] == []
    # every sequence value, index, constraint, trigger, policy, view and type was compared
    assert record["objects_checked"] > 60
    assert record["owners"] == "restored"  # the backup's roles were created first
    assert record["restore_seconds"] > 0 and record["restored_size"] > 0
    stored = list((keyed_repo.repo / "drills" / backup_id).glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["passed"] is True

    listed = keyed_repo.list()[0]["drill"]
    assert listed["passed"] is True
    assert listed["rto_seconds"] == pytest.approx(record["restore_seconds"], abs=0.01)
    assert listed["at"].startswith(str(record["finished_at"])[:19])
    table = run_bika("list", "--repo", str(keyed_repo.repo))
    assert "✓ " in table.stdout and "never" not in table.stdout
    shown = run_bika("show", backup_id, "--repo", str(keyed_repo.repo))
    assert "drills (1)" in shown.stdout and "passed" in shown.stdout


@pytest.mark.parametrize("server", ["pg18", "pg15"])
def test_drill_on_a_target_server_uses_a_new_database_and_drops_it(
    server: str,
    request: pytest.FixtureRequest,
    new_database: Callable[[Cluster], str],
    keyed_repo: KeyedRepo,
) -> None:
    cluster: Cluster = request.getfixturevalue(server)
    url = new_database(cluster)
    sample.load(url, awkward.SQL)
    keyed_repo.backup(url)
    before = _databases(cluster)

    code, record = _drill(keyed_repo, "--target", cluster.url())

    assert code == 0, record["problems"]
    target = record["target"]
    assert isinstance(target, dict) and target["kind"] == "server"
    assert target["database"].startswith("bika_drill_")
    assert target["server_version"].split(".")[0] == cluster.version.split(".")[0]
    assert record["owners"] == "skipped"  # a --target's roles are left alone
    assert record["tables_checked"] == len(awkward.TABLES)
    assert _databases(cluster) == before


def test_drill_names_the_table_whose_restored_rows_were_altered(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    sample.load(url, awkward.SQL)
    backup_id = keyed_repo.backup(url)

    def tamper(restored: ConnInfo) -> None:
        with psycopg.connect(restored.url, autocommit=True) as db:
            db.execute("""UPDATE "Ibimina Ltd"."Members" SET "select" = 'x' WHERE "MemberID" = 7""")
            db.execute("DELETE FROM public.misc_types WHERE id = 3")

    outcome = _api_drill(keyed_repo, backup_id, DrillOptions(before_verify=tamper))

    record = outcome.record
    assert not record.passed
    differing = {t.qualified: t for t in record.tables}
    assert set(differing) == {"Ibimina Ltd.Members", "public.misc_types"}
    members = differing["Ibimina Ltd.Members"]
    assert members.status == "differs" and members.rows == members.expected_rows == 60
    assert "same 60 rows but different content" in members.detail
    assert differing["public.misc_types"].detail == "2 rows restored, 3 in the backup"
    assert any("Ibimina Ltd.Members" in p for p in record.problems)
    assert drill_history(Repository.open(LocalStorage(keyed_repo.repo)), backup_id) == [record]
    assert keyed_repo.list()[0]["drill"]["passed"] is False
    assert "✗ " in run_bika("list", "--repo", str(keyed_repo.repo)).stdout


def test_drill_fails_when_the_stored_artifact_is_another_backups(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    sample.load(url, awkward.SQL)
    first = keyed_repo.backup(url)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE public.texts SET body = 'changed' WHERE label = 'tab'")
    second = keyed_repo.backup(url)
    artifact = "database.pgdump.zst.age"
    swapped = keyed_repo.repo / "backups" / first / artifact
    swapped.chmod(0o600)
    swapped.write_bytes((keyed_repo.repo / "backups" / second / artifact).read_bytes())

    code, record = _drill(keyed_repo, first)

    assert code == 1
    assert record["passed"] is False
    tables = record["tables"]
    assert isinstance(tables, list) and [(t["schema"], t["name"]) for t in tables] == [
        ("public", "texts")
    ]
    assert "different content" in tables[0]["detail"]
    problems = record["problems"]
    assert isinstance(problems, list) and len(problems) == 2
    assert "is not the one the manifest describes" in problems[0]
    assert problems[1] == f"table public.texts: {tables[0]['detail']}"


def test_drill_of_a_corrupted_archive_is_a_recorded_failure(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    sample.load(url, awkward.SQL)
    backup_id = keyed_repo.backup(url)
    stored = keyed_repo.repo / "backups" / backup_id / "database.pgdump.zst.age"
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x55
    stored.chmod(0o600)
    stored.write_bytes(bytes(data))

    code, record = _drill(keyed_repo, backup_id)

    assert code == 1 and record["passed"] is False
    # found reading the archive's TOC or its data, depending on how far in the damage is
    assert "cannot be read" in record["problems"][0] or "restore failed" in record["problems"][0]
    assert "corrupted" in record["problems"][0]
    assert keyed_repo.list()[0]["drill"]["passed"] is False


def test_drill_keep_leaves_the_scratch_database(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    backup_id = keyed_repo.backup(url)

    outcome = _api_drill(keyed_repo, backup_id, DrillOptions(target=pg18.url(), keep=True))

    kept = outcome.record.target.database
    try:
        assert outcome.record.passed, outcome.record.problems
        assert kept in _databases(pg18)
        assert outcome.kept is not None and kept in outcome.kept
        with psycopg.connect(pg18.url(kept)) as db:
            assert db.execute("SELECT count(*) FROM public.members").fetchone() == (1000,)
    finally:
        pg18.drop_database(kept)


def test_drill_reports_extensions_the_drill_server_lacks_and_passes_on_the_rest(
    pg15: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    # Debian's PostgreSQL 15 has uuid-ossp and pgcrypto; the embedded 18 has neither
    url = new_database(pg15)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute('CREATE EXTENSION "uuid-ossp"')
        db.execute("CREATE EXTENSION pgcrypto")
        db.execute(
            "CREATE TABLE public.users (id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4(),"
            " name text NOT NULL)"
        )
        db.execute("INSERT INTO public.users (name) VALUES ('Uwimana'), ('Niyonsaba')")
        db.execute("CREATE TABLE public.notes (id int PRIMARY KEY, digest bytea)")
        db.execute("INSERT INTO public.notes VALUES (1, public.digest('ikimina', 'sha256'))")
    backup_id = keyed_repo.backup(url)

    outcome = _api_drill(keyed_repo, backup_id, DrillOptions())

    record = outcome.record
    assert record.passed, record.problems
    assert record.missing_extensions == ["pgcrypto", "uuid-ossp"]
    assert [(t.qualified, t.status) for t in record.tables] == [("public.users", "skipped")]
    assert record.tables_checked == 1  # public.notes: its bytes need no extension to restore
    note = next(n for n in record.notes if n.startswith("extension uuid-ossp"))
    assert "not available on the drill server" in note and "TABLE public.users" in note


@pytest.mark.parametrize("split_bytes", [1 << 40, 8192])
def test_fingerprints_of_a_live_database_equal_the_manifests(
    pg: Cluster, split_bytes: int, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    # the source itself, unchanged since its backup, must fingerprint exactly as pg_dump saw it;
    # with a tiny split_bytes the bigger tables are read as page ranges by several connections
    url = new_database(pg)
    sample.load(url, awkward.SQL)
    manifest = keyed_repo.manifest(keyed_repo.backup(url))
    expected = {
        (t["schema"], t["name"]): (t["rows"], t["sha256"], t["bytes"]) for t in manifest["tables"]
    }

    report = fingerprint_tables(
        ConnInfo.parse(url),
        list(expected),
        settings=manifest["source"]["output_settings"],
        workers=3,
        split_bytes=split_bytes,
    )

    got = {key: (t.rows, t.sha256, t.size) for key, t in report.tables.items()}
    assert got == expected


def test_a_table_is_handed_over_for_reading_once_its_load_and_exclusive_steps_committed(
    pg: Cluster, new_database: Callable[[Cluster], str]
) -> None:
    # what a parallel pg_restore does with each table it created: TRUNCATE and COPY, COMMIT;
    # later ALTER TABLE … ADD PRIMARY KEY, which would wait for a reader of the table
    url = new_database(pg)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE public.groups (id int); CREATE TABLE public.members (id int)")
        db.execute("CREATE TABLE public.loans (id int)")
    groups, members, loans = ("public", "groups"), ("public", "members"), ("public", "loans")
    steps = {members: {("CONSTRAINT", ("public", "members members_pkey"))}}
    handed: list[tuple[str, str]] = []

    with (
        psycopg.connect(url) as loader,
        LoadWatcher(
            ConnInfo.parse(url), [groups, members, loans], handed.extend, steps=steps
        ) as watcher,
    ):
        wait_for(lambda: len(watcher.first_seen) == 3)
        for table in ("groups", "members"):
            loader.execute(f"TRUNCATE TABLE ONLY public.{table}")
            loader.execute(f"INSERT INTO public.{table} SELECT generate_series(1, 500)")
        time.sleep(5 * LOAD_POLL_SECONDS)
        assert handed == []  # their rows are not visible yet: reading now would find none
        loader.commit()
        wait_for(lambda: handed == [groups])
        loader.execute("ALTER TABLE public.members ADD CONSTRAINT members_pkey PRIMARY KEY (id)")
        time.sleep(5 * LOAD_POLL_SECONDS)
        assert handed == [groups]
        loader.commit()
        wait_for(lambda: handed == [groups, members])

    assert watcher.added == {groups, members}  # loans never loaded: read at the end


# -- without servers ----------------------------------------------------------------------


def test_table_hasher_frames_rows_like_pg_dump() -> None:
    rows = [
        b"1\tUwimana\n",
        b"2\t\\N\n",
        b"\n",
        "3\tÙwíimâna 🐄\\t\n".encode(),
        b"x" * 70000 + b"\n",
    ]
    hasher = TableHasher()
    hasher.update(rows[:2])
    hasher.update(rows[2:])
    framed = b"".join(row_frame(r) for r in rows)
    assert hasher.sha256 == hashlib.sha256(framed).hexdigest()
    assert (hasher.rows, hasher.size) == (len(rows), len(framed))
    text = TableHasher()
    rest = text.update_text(b"".join(rows)[:20])
    assert text.update_text(rest + b"".join(rows)[20:]) == b""
    assert text.sha256 == hasher.sha256


def test_a_table_counts_as_loaded_once_its_storage_changed_since_first_seen() -> None:
    groups, members, loans = ("public", "groups"), ("public", "members"), ("ledger", "loans")
    first_seen: dict[tuple[str, str], int] = {}
    waiting = [members, groups, loans]

    # created, not loaded yet (loans not even created): nothing to read
    assert (
        loaded_tables(first_seen, [("public", "groups", 10), ("public", "members", 11)], waiting)
        == []
    )
    # pg_restore's TRUNCATE + COPY of groups committed; members is still loading
    assert loaded_tables(
        first_seen,
        [("public", "groups", 20), ("public", "members", 11), ("ledger", "loans", 12)],
        waiting,
    ) == [groups]
    # loans first seen now: whether it loaded before that is unknown, so it waits for the end
    assert loaded_tables(
        first_seen, [("public", "members", 21), ("ledger", "loans", 12)], [members, loans]
    ) == [members]
    assert loaded_tables(first_seen, [("ledger", "loans", 12)], [loans]) == []
    # a table that is not waited for is never reported
    assert loaded_tables(first_seen, [("public", "groups", 30)], []) == []


def test_a_loaded_table_waits_for_the_steps_that_would_wait_for_its_readers() -> None:
    entries = [
        _entry(1, "TABLE", "public", "members"),
        _entry(2, "TABLE", "public", "groups"),
        _entry(3, "TABLE", "public", "loans"),
        _entry(4, "CONSTRAINT", "public", "members members_pkey", 1),
        _entry(5, "CONSTRAINT", "public", "members members_phone_key", 1),
        _entry(6, "INDEX", "public", "members_group_id_idx", 1),  # SHARE: reading goes on
        _entry(7, "FK CONSTRAINT", "public", "members members_group_fk", 1, 2),
        _entry(8, "POLICY", "public", "groups by_owner", 2),
        _entry(9, "ROW SECURITY", "public", "loans", 3),
    ]
    members, groups, loans = ("public", "members"), ("public", "groups"), ("public", "loans")
    steps = blocking_steps(entries, [members, groups, loans], {9: "pgcrypto"})
    assert steps == {
        members: {
            ("CONSTRAINT", ("public", "members members_pkey")),
            ("CONSTRAINT", ("public", "members members_phone_key")),
        },
        groups: {("POLICY", ("public", "groups by_owner"))},
        loans: set(),  # its only step needs a missing extension: never done, never waited for
    }

    present = {"CONSTRAINT": {("public", "members members_pkey")}, "POLICY": set()}
    assert unblocked([members, groups, loans], steps, present) == [loans]
    present["CONSTRAINT"].add(("public", "members members_phone_key"))
    assert unblocked([members, groups], steps, present) == [members]


def _entry(
    dump_id: int, desc: str, ns: str | None, tag: str, *deps: int, defn: str = ""
) -> TocEntry:
    return TocEntry(
        dump_id=dump_id,
        desc=desc,
        section=0,
        namespace=ns,
        tag=tag,
        owner="postgres",
        dependencies=deps,
        defn=defn or None,
    )


def test_what_needs_a_missing_extension_is_skipped_transitively() -> None:
    entries = [
        _entry(1, "EXTENSION", None, "vector"),
        _entry(2, "EXTENSION", None, "plpgsql"),
        _entry(3, "TABLE", "public", "items", 1),
        _entry(4, "TABLE DATA", "public", "items", 3),
        _entry(5, "INDEX", "public", "items_embedding_idx", 3),
        _entry(6, "TABLE", "public", "groups"),
        _entry(7, "FUNCTION", "public", "f()", 2),
    ]
    assert dependents(entries, ["vector"]) == {1: "vector", 3: "vector", 4: "vector", 5: "vector"}
    assert dependents(entries, []) == {}


def test_schema_comparison_names_missing_objects_and_sequence_values() -> None:
    entries = [
        _entry(1, "TABLE", "public", "groups"),
        _entry(2, "INDEX", "public", "groups_name_idx", 1),
        _entry(3, "TRIGGER", "ledger", "accounts accounts_audit"),
        _entry(4, "SCHEMA", None, "ledger"),
        _entry(
            5,
            "SEQUENCE SET",
            "public",
            "groups_id_seq",
            defn="SELECT pg_catalog.setval('public.groups_id_seq', 40, true);\n",
        ),
        _entry(6, "COMMENT", "public", "TABLE groups"),
        _entry(7, "POLICY", "public", "secrets by_owner", 8),
    ]
    present = {
        "RELATION": {("public", "groups")},
        "TRIGGER": {("ledger", "accounts accounts_audit")},
        "SCHEMA": {("", "ledger")},
    }
    objects, problems, checked = compare_objects(
        entries, present, {7: "pgcrypto"}, lambda name: (39, True)
    )
    assert checked == 5  # the comment is not compared; the policy is skipped
    assert [(o.kind, o.qualified, o.status) for o in objects] == [
        ("INDEX", "public.groups_name_idx", "missing"),
        ("SEQUENCE SET", "public.groups_id_seq", "differs"),
        ("POLICY", "public.secrets by_owner", "skipped"),
    ]
    assert problems[0] == "INDEX public.groups_name_idx: missing in the restored database"
    assert "value 39" in problems[1] and "the backup set 40" in problems[1]


def test_table_result_says_what_differs() -> None:
    same = table_result("public", "t", 3, "a" * 64, 3, "a" * 64, None)
    assert same.status == "ok" and same.detail == ""
    assert table_result("public", "t", 3, "a" * 64, 2, "b" * 64, None).detail == (
        "2 rows restored, 3 in the backup"
    )
    missing = table_result("public", "t", 3, "a" * 64, 0, "", "does not exist")
    assert missing.status == "missing" and missing.rows is None


def test_index_builds_run_in_parallel_only_with_cores_to_spare_beyond_the_jobs() -> None:
    assert cluster_settings(2, 2)["max_parallel_maintenance_workers"] == "0"
    assert cluster_settings(4, 16)["max_parallel_maintenance_workers"] == "3"
    assert cluster_settings(1, 1) == {"autovacuum": "off", "max_parallel_maintenance_workers": "0"}


def test_dump_encoding_comes_from_the_archive() -> None:
    entries = [_entry(1, "ENCODING", None, "ENCODING", defn="SET client_encoding = 'LATIN1';\n")]
    assert dump_encoding(entries) == "LATIN1"
    assert dump_encoding([]) is None


def test_the_roles_script_leaves_the_drills_own_superuser_alone() -> None:
    script = (
        b"CREATE ROLE postgres;\nALTER ROLE postgres WITH NOSUPERUSER LOGIN;\n"
        b'CREATE ROLE "anon";\nALTER ROLE "anon" WITH NOLOGIN;\nCREATE ROLE postgres_fdw_user;\n'
        b'ALTER ROLE "postgres" SET search_path TO app;\nGRANT anon TO postgres;\n'
    )
    assert without_role(script, "postgres") == (
        b'CREATE ROLE "anon";\nALTER ROLE "anon" WITH NOLOGIN;\nCREATE ROLE postgres_fdw_user;\n'
        b"GRANT anon TO postgres;\n"
    )


def _databases(cluster: Cluster) -> set[str]:
    return {str(r[0]) for r in cluster.query("SELECT datname FROM pg_database")}
