"""The supabase profile: a backup of a project taken as `postgres` restores into a fresh project
(PostgreSQL 15 and 18, both privilege generations) with the user's objects, privileges and rows
as in the source and the platform's objects untouched; what a plain pg_dump loses is caught.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import supabase_fixture as fixture
from conftest import PG15_BIN

from bika.postgres import binaries
from bika.postgres import supabase as pg_supabase
from bika.postgres.archive import TocEntry
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo
from bika.supabase import comparison, profile, roles
from bika.supabase.selection import parents_first

from helpers import KeyedRepo, assert_clean_error, run_bika

# -- the pure parts ------------------------------------------------------------------------


def test_managed_schemas_are_supabase_clis_list_and_user_data_stays_in() -> None:
    for schema in ("auth", "storage", "realtime", "vault", "pg_toast", "_timescaledb_cache"):
        assert profile.is_managed_schema(schema)
    assert not profile.is_managed_schema("public")
    assert profile.holds_user_data("auth", "users")
    assert profile.holds_user_data("storage", "objects")
    assert profile.holds_user_data("public", "loans")
    assert not profile.holds_user_data("auth", "schema_migrations")
    assert not profile.holds_user_data("storage", "migrations")
    assert not profile.holds_user_data("vault", "secrets")
    excluded = profile.excluded_schemas_for_dump()
    assert "auth" not in excluded and "vault" in excluded and "extensions" in excluded


def test_supabase_hosts_are_recognised() -> None:
    assert profile.is_supabase_host("db.abcdefghij.supabase.co")
    assert profile.is_supabase_host("aws-0-eu-west-1.pooler.supabase.com")
    assert not profile.is_supabase_host("supabase.co.example.org")
    assert not profile.is_supabase_host("127.0.0.1")


def test_roles_script_keeps_only_custom_roles_and_what_postgres_may_set() -> None:
    dump = "\n".join(
        [
            "\\restrict abc",
            "SET default_transaction_read_only = off;",
            "CREATE ROLE anon;",
            "ALTER ROLE anon WITH NOSUPERUSER NOINHERIT NOLOGIN NOREPLICATION NOBYPASSRLS;",
            "CREATE ROLE cli_login_postgres;",
            "CREATE ROLE app_reporter;",
            "ALTER ROLE app_reporter WITH NOSUPERUSER INHERIT NOLOGIN NOREPLICATION NOBYPASSRLS;",
            "GRANT app_reporter TO app_batch WITH INHERIT TRUE GRANTED BY postgres;",
            "GRANT anon TO postgres GRANTED BY supabase_admin;",
            "GRANT app_reporter TO authenticator;",
            "\\unrestrict abc",
        ]
    )
    assert roles.custom_roles_sql(dump) == (
        "CREATE ROLE app_reporter;\n"
        "ALTER ROLE app_reporter WITH INHERIT NOLOGIN;\n"
        "GRANT app_reporter TO app_batch WITH INHERIT TRUE;\n"
    )


def _entry(desc: str, schema: str, tag: str, dump_id: int) -> TocEntry:
    return TocEntry(
        dump_id=dump_id, desc=desc, section=3, namespace=schema, tag=tag, owner="postgres"
    )


def test_rows_load_parents_first_when_triggers_cannot_be_held_off() -> None:
    data = [
        _entry("TABLE DATA", "auth", "identities", 1),
        _entry("TABLE DATA", "auth", "refresh_tokens", 2),
        _entry("TABLE DATA", "auth", "sessions", 3),
        _entry("TABLE DATA", "auth", "users", 4),
    ]
    keys = [
        (("auth", "identities"), ("auth", "users")),
        (("auth", "sessions"), ("auth", "users")),
        (("auth", "refresh_tokens"), ("auth", "sessions")),
    ]
    order = [e.tag for e in parents_first(data, keys)]
    assert order.index("users") < order.index("identities")
    assert order.index("users") < order.index("sessions") < order.index("refresh_tokens")


def test_comparison_reports_a_lost_revoke_a_lost_trigger_and_a_changed_platform_owner() -> None:
    source = {
        "acl": [["public", "r loans", "authenticated:SELECT,postgres:SELECT"]],
        "trigger": [["auth", "users on_auth_user_created", "CREATE TRIGGER … [O]"]],
        "owner": [["auth", "r users", "supabase_auth_admin"]],
    }
    before = {"owner": [["auth", "r users", "supabase_auth_admin"]]}
    after = {
        "acl": [["public", "r loans", "anon:SELECT,authenticated:SELECT,postgres:SELECT"]],
        "owner": [["auth", "r users", "postgres"]],
    }
    messages = [f.message for f in comparison.compare(source, before, after)]
    assert len(messages) == 3, messages
    assert any("owner of auth.r users differs" in m for m in messages)
    assert any("privileges on public.r loans differs" in m and "anon" in m for m in messages)
    assert any("trigger auth.users on_auth_user_created is gone" in m for m in messages)
    assert comparison.compare(source, before, {**source, **before}) == []


# -- against Supabase-shaped servers -------------------------------------------------------

COMBOS = [("18", "2024"), ("18", "2025"), ("15", "2024"), ("15", "2025")]


class Platform:
    def __init__(self, version: str, generation: str) -> None:
        bin_dir = None if version == "18" else PG15_BIN
        self.generation = generation
        self.source = fixture.start_platform(bin_dir, generation)
        self.target = fixture.start_platform(bin_dir, generation)

    def close(self) -> None:
        self.source.remove()
        self.target.remove()

    def app(self) -> str:
        return fixture.app_project(self.source, _name("app"), self.generation)

    def fresh(self) -> str:
        return fixture.fresh_project(self.target, _name("proj"), self.generation)


def _name(stem: str) -> str:
    return f"{stem}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=COMBOS, ids=[f"pg{v}-{g}" for v, g in COMBOS])
def platform(request: pytest.FixtureRequest) -> Iterator[Platform]:
    version, generation = request.param
    made = Platform(version, generation)
    try:
        yield made
    finally:
        made.close()


def _env(repo: KeyedRepo, url: str) -> dict[str, str]:
    return {"BIKA_REPO": str(repo.repo), "BIKA_DATABASE_URL": url, "BIKA_IDENTITY": str(repo.key)}


def _backup(repo: KeyedRepo, url: str) -> dict[str, Any]:
    result = run_bika("backup", env=_env(repo, url))
    assert result.returncode == 0, result.stderr
    backup_id = repo.list()[-1]["id"]
    manifest: dict[str, Any] = json.loads(
        (repo.repo / "backups" / backup_id / "manifest.json").read_text()
    )
    return manifest


def _restore(repo: KeyedRepo, backup_id: str, url: str, *extra: str) -> Any:
    return run_bika(
        "restore", backup_id, "--to", url, "--profile", "supabase", "--json", *extra,
        env={"BIKA_REPO": str(repo.repo), "BIKA_IDENTITY": str(repo.key)},
    )  # fmt: skip


def _every_table(url: str) -> list[tuple[str, str]]:
    facts = pg_supabase.project_facts(ConnInfo.parse(url))
    return sorted(
        t
        for t, kind in facts.relations.items()
        if kind in ("r", "p") and profile.holds_user_data(*t)
    )


def test_backup_holds_the_users_objects_and_rows_not_the_platforms(
    platform: Platform, keyed_repo: KeyedRepo
) -> None:
    manifest = _backup(keyed_repo, platform.app())
    assert manifest["profile"] == "supabase"
    assert set(manifest["artifacts"]) == {"database", "globals", "catalog"}
    tables = {f"{t['schema']}.{t['name']}": t["rows"] for t in manifest["tables"]}
    assert tables["auth.users"] == 25 and tables["auth.identities"] == 25
    assert tables["storage.objects"] == 7 and tables["public.loans"] == 75
    assert tables["supabase_migrations.schema_migrations"] == 1
    assert "auth.schema_migrations" not in tables and "storage.migrations" not in tables
    assert not any(name.startswith("realtime.") for name in tables)


def test_restore_into_a_fresh_project_gives_the_source_objects_privileges_and_rows(
    platform: Platform, keyed_repo: KeyedRepo
) -> None:
    source = platform.app()
    manifest = _backup(keyed_repo, source)
    target = platform.fresh()
    before = pg_supabase.catalog_snapshot(ConnInfo.parse(target))

    result = _restore(keyed_repo, manifest["id"], target)

    report = json.loads(result.stdout)
    assert report["replica"] is (platform.generation == "2024")
    assert [r for r in report["roles"] if r["error"]] == []
    after = pg_supabase.catalog_snapshot(ConnInfo.parse(target))
    differences = comparison.compare(
        pg_supabase.catalog_snapshot(ConnInfo.parse(source)), before, after
    )
    if platform.generation == "2024":
        assert result.returncode == 0, result.stderr
        assert report["ok"] and report["skipped"] == [] and report["findings"] == []
        assert differences == []
    else:
        # postgres is no longer a member of storage.objects' owner: it may not add policies
        assert result.returncode == 1
        assert {s["what"] for s in report["skipped"]} == {
            "POLICY storage.objects avatars are public",
            "POLICY storage.objects upload own avatar",
        }
        assert all("only its owner may" in s["why"] for s in report["skipped"])
        assert sorted(f["facts"]["name"] for f in report["findings"]) == [
            "objects avatars are public",
            "objects upload own avatar",
        ]
        assert [f.facts["name"] for f in differences] == [
            "objects avatars are public",
            "objects upload own avatar",
        ]
    tables = _every_table(source)
    assert ("auth", "users") in tables and ("public", "audit_log") in tables
    source_rows = pg_supabase.table_digests(ConnInfo.parse(source), tables)
    assert pg_supabase.table_digests(ConnInfo.parse(target), tables) == source_rows
    # the restored trigger works: a new user gets a profile
    fixture.run_sql(
        platform.target,
        ConnInfo.parse(target).database,
        "INSERT INTO auth.users (id, email, raw_user_meta_data) VALUES"
        " ('00000000-0000-4000-8000-999999999999', 'new@example.org', '{\"username\": \"new\"}')",
        user=fixture.ADMIN,
    )
    with fixture.connect(platform.target, ConnInfo.parse(target).database) as db:
        got = db.execute("SELECT username FROM public.profiles WHERE username = 'new'")
        assert got.fetchall() == [("new",)]
        revoked = db.execute("SELECT has_table_privilege('anon', 'public.loans', 'SELECT')")
        assert revoked.fetchall() == [(False,)]


def test_restore_refuses_a_project_that_already_has_the_users_objects(
    platform: Platform, keyed_repo: KeyedRepo
) -> None:
    source = platform.app()
    manifest = _backup(keyed_repo, source)
    result = _restore(keyed_repo, manifest["id"], source)
    assert_clean_error(result, "not a fresh project", "--clean")


def test_clean_restore_into_the_same_project_touches_only_the_users_objects(
    platform: Platform, keyed_repo: KeyedRepo
) -> None:
    source = platform.app()
    manifest = _backup(keyed_repo, source)
    conn = ConnInfo.parse(source)
    tables = _every_table(source)
    rows = pg_supabase.table_digests(conn, tables)
    before = pg_supabase.catalog_snapshot(conn)
    fixture.run_sql(platform.source, conn.database, "DELETE FROM public.loans WHERE id < 10")

    result = _restore(keyed_repo, manifest["id"], source, "--clean")

    assert result.returncode == 0, result.stdout + result.stderr
    assert pg_supabase.table_digests(conn, tables) == rows
    assert comparison.compare(before, before, pg_supabase.catalog_snapshot(conn)) == []


def test_plain_pg_dump_restore_loses_what_the_comparison_reports(platform: Platform) -> None:
    """What supabase's documented `db dump` + psql does (the user's schemas only, no owner,
    no ACL): the trigger on auth.users and the REVOKEs are lost, and the comparison says so."""
    source = platform.app()
    target = platform.fresh()
    bin_dir = binaries.find_bin_dir(None)
    before = pg_supabase.catalog_snapshot(ConnInfo.parse(target))
    dump = subprocess.run(
        [str(binaries.tool("pg_dump", bin_dir)), "--schema=public", "--no-owner", "--no-acl",
         f"--dbname={source}"],
        capture_output=True, check=True,
    )  # fmt: skip
    restore = subprocess.run(
        [str(binaries.tool("psql", bin_dir)), "-X", "-q", f"--dbname={target}"],
        input=dump.stdout, capture_output=True, check=True,
    )  # fmt: skip
    assert restore.returncode == 0
    after = pg_supabase.catalog_snapshot(ConnInfo.parse(target))
    source_snapshot = pg_supabase.catalog_snapshot(ConnInfo.parse(source))

    found = comparison.compare(source_snapshot, before, after)

    messages = [f.message for f in found]
    assert any(m.startswith("trigger auth.users on_auth_user_created is gone") for m in messages)
    assert any(m.startswith("privileges on public.r loans differs") for m in messages)
    assert any(m.startswith("privileges on public.r audit_log differs") for m in messages)
    assert any("policy storage.objects" in m and "gone" in m for m in messages)


def test_doctor_shows_the_detected_profile(platform: Platform, keyed_repo: KeyedRepo) -> None:
    result = run_bika("doctor", env=_env(keyed_repo, platform.app()))
    assert "supabase (detected)" in result.stdout, result.stdout + result.stderr


def test_a_projects_backup_passes_a_drill(platform: Platform, keyed_repo: KeyedRepo) -> None:
    """A throwaway server has none of the platform's roles: the drill makes them."""
    manifest = _backup(keyed_repo, platform.app())
    result = run_bika("drill", manifest["id"], env=_env(keyed_repo, "postgresql://unused/x"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "event trigger(s) of the Supabase platform not restored" in result.stderr


def test_profile_set_to_postgres_backs_up_a_project_whole(
    platform: Platform, keyed_repo: KeyedRepo
) -> None:
    url = platform.app()
    result = run_bika("backup", env={**_env(keyed_repo, url), "BIKA_PROFILE": "postgres"})
    assert result.returncode == 0, result.stderr
    backup_id = keyed_repo.list()[-1]["id"]
    manifest = json.loads((keyed_repo.repo / "backups" / backup_id / "manifest.json").read_text())
    assert manifest["profile"] == "postgres"
    assert any(t["schema"] == "realtime" for t in manifest["tables"])


def test_plain_database_is_not_taken_for_a_project(pg18: Cluster, keyed_repo: KeyedRepo) -> None:
    url = pg18.create_database(_name("plain"))
    manifest = _backup(keyed_repo, url)
    assert manifest["profile"] == "postgres"
    assert "catalog" not in manifest["artifacts"]


def test_restore_into_a_database_that_is_not_a_project_is_refused(
    pg18: Cluster, keyed_repo: KeyedRepo
) -> None:
    url = pg18.create_database(_name("plain"))
    manifest = _backup(keyed_repo, url)
    result = _restore(keyed_repo, manifest["id"], pg18.create_database(_name("plain")))
    assert_clean_error(result, "is not a Supabase project")


def test_profile_refuses_the_plain_restores_options(pg18: Cluster, keyed_repo: KeyedRepo) -> None:
    manifest = _backup(keyed_repo, pg18.create_database(_name("plain")))
    result = _restore(
        keyed_repo, manifest["id"], "postgresql://h/db", "--jobs", "4", "--schema", "public"
    )
    assert result.returncode == 2
    assert_clean_error(result, "--schema, --jobs cannot be used with --profile supabase")
