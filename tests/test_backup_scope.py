"""A backup of part of a database: --schema, --exclude-schema, --table, --exclude-table and
--exclude-table-data (or [backup] in bika.toml) take effect, are recorded in the manifest, and a
drill or verify of such a backup passes; a role that cannot read a table in scope is told so
by doctor and by backup before anything is dumped.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bika.config import load_settings
from bika.postgres import binaries, catalog
from bika.postgres.archive import read_toc
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo
from bika.postgres.dump import DumpScope, name_regexes

from helpers import KeyedRepo, assert_clean_error, run_bika

SCHEMA_SQL = """
CREATE SCHEMA archive;
CREATE TABLE public.accounts (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, event text NOT NULL);
CREATE TABLE public."Mixed Case" (v int);
CREATE TABLE archive.old_events (id int, what text);
INSERT INTO public.accounts (name) VALUES ('ann'), ('bo'), ('cy');
INSERT INTO public.audit_log (event) SELECT 'event ' || g FROM generate_series(1, 50) g;
INSERT INTO public."Mixed Case" VALUES (1), (2);
INSERT INTO archive.old_events SELECT g, 'old' FROM generate_series(1, 4) g;
"""
EVERYTHING = {
    "public.accounts": 3,
    "public.audit_log": 50,
    "public.Mixed Case": 2,
    "archive.old_events": 4,
}


def _load(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as db:
        db.execute(SCHEMA_SQL)  # type: ignore[arg-type]


def _tables(url: str) -> dict[str, int]:
    """Every user table of a database and its exact rows."""
    with psycopg.connect(url) as db:
        names = db.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE c.relkind = 'r'"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        return {
            f"{schema}.{name}": db.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
            ).fetchone()[0]  # type: ignore[index]
            for schema, name in names
        }


def _restore(cluster: Cluster, keyed_repo: KeyedRepo, backup_id: str) -> str:
    url = cluster.url(f"scope_restored_{uuid.uuid4().hex[:8]}")
    result = run_bika(
        "restore",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--to",
        url,
        "--create",
    )
    assert result.returncode == 0, result.stderr
    return url


@pytest.mark.parametrize(
    ("options", "scope", "restored"),
    [
        (
            ["--exclude-table-data", "public.audit_log"],
            {"exclude_table_data": ["public.audit_log"]},
            {**EVERYTHING, "public.audit_log": 0},
        ),
        (
            ["--exclude-table", "audit*"],
            {"exclude_table": ["audit*"]},
            {k: v for k, v in EVERYTHING.items() if k != "public.audit_log"},
        ),
        (
            ["--exclude-schema", "archive"],
            {"exclude_schema": ["archive"]},
            {k: v for k, v in EVERYTHING.items() if not k.startswith("archive.")},
        ),
        (
            ["--schema", "archive"],
            {"schema": ["archive"]},
            {"archive.old_events": 4},
        ),
        (
            ["--table", '"Mixed Case"', "--table", "public.acc*"],
            {"table": ['"Mixed Case"', "public.acc*"]},
            {"public.accounts": 3, "public.Mixed Case": 2},
        ),
    ],
    ids=["exclude-table-data", "exclude-table", "exclude-schema", "schema", "table"],
)
def test_each_scope_option_decides_what_is_restored(
    pg: Cluster,
    new_database: Callable[[Cluster], str],
    keyed_repo: KeyedRepo,
    options: list[str],
    scope: dict[str, list[str]],
    restored: dict[str, int],
) -> None:
    url = new_database(pg)
    _load(url)

    backup_id = keyed_repo.backup(url, *options)

    recorded = keyed_repo.manifest(backup_id)["scope"]
    for key in ("schema", "exclude_schema", "table", "exclude_table", "exclude_table_data"):
        assert recorded[key] == scope.get(key, []), key
    with_rows = {k for k, v in restored.items() if k != "public.audit_log" or v}
    assert {f"{t['schema']}.{t['name']}" for t in keyed_repo.manifest(backup_id)["tables"]} == (
        with_rows
    )
    target = _restore(pg, keyed_repo, backup_id)
    try:
        assert _tables(target) == restored
    finally:
        pg.drop_database(target.rsplit("/", 1)[1])


def test_a_backup_without_some_data_passes_verify_and_drill_and_shows_its_scope(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    _load(url)
    backup_id = keyed_repo.backup(
        url, "--exclude-table-data", "public.audit_log", "--exclude-schema", "archive"
    )
    assert keyed_repo.manifest(backup_id)["scope"]["tables_without_data"] == [
        {"schema": "public", "name": "audit_log"}
    ]

    shown = run_bika("show", backup_id, "--repo", str(keyed_repo.repo))
    assert shown.returncode == 0, shown.stderr
    words = " ".join(shown.stdout.split())
    assert "scope --exclude-schema=archive --exclude-table-data=public.audit_log" in words
    assert "rows left out of public.audit_log: restored empty" in words

    key = ["--repo", str(keyed_repo.repo), "--identity", str(keyed_repo.key)]
    verified = run_bika("verify", backup_id, "--read-data", *key)
    assert verified.returncode == 0, verified.stderr + verified.stdout

    drilled = run_bika("drill", backup_id, *key, "--json")
    record = json.loads(drilled.stdout)
    assert drilled.returncode == 0, record["problems"]
    assert record["passed"] is True
    assert any("public.audit_log" in note and "on purpose" in note for note in record["notes"])
    assert not any("archive" in p or "audit_log" in p for p in record["problems"])


def test_the_scope_comes_from_bika_toml_and_flags_replace_it(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    _load(url)
    config = tmp_path / "bika.toml"
    config.write_text('[backup]\nexclude_table_data = ["public.audit_log"]\n')

    from_file = run_bika("backup", "--repo", str(keyed_repo.repo), "--db", url, cwd=tmp_path)
    assert from_file.returncode == 0, from_file.stderr
    scope = keyed_repo.manifest(from_file.stdout.split()[-1])["scope"]
    assert scope["exclude_table_data"] == ["public.audit_log"]

    flagged = run_bika(
        "--config",
        str(config),
        "backup",
        "--repo",
        str(keyed_repo.repo),
        "--db",
        url,
        "--exclude-table-data",
        "archive.*",
    )
    assert flagged.returncode == 0, flagged.stderr
    scope = keyed_repo.manifest(flagged.stdout.split()[-1])["scope"]
    assert scope["exclude_table_data"] == ["archive.*"]
    assert scope["tables_without_data"] == [{"schema": "archive", "name": "old_events"}]


def test_one_scope_pattern_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    environ = {"BIKA_BACKUP__EXCLUDE_TABLE_DATA": "public.audit_log"}

    settings = load_settings(None, environ=environ)

    assert settings.backup.scope() == DumpScope(exclude_table_data=("public.audit_log",))


def test_a_table_pattern_matching_nothing_is_refused(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    _load(url)

    result = run_bika("backup", "--repo", str(keyed_repo.repo), "--db", url, "--table", "nosuch")

    assert_clean_error(result, "nosuch")
    assert keyed_repo.list() == []


@pytest.mark.parametrize(
    "pattern",
    ["accounts", "ACCOUNTS", "public.a*", '"Mixed Case"', "Mixed*", "*.old_?vents", "archive.*"],
)
def test_scope_resolution_selects_the_tables_pg_dump_dumps(
    pg18: Cluster, new_database: Callable[[Cluster], str], pattern: str
) -> None:
    url = new_database(pg18)
    _load(url)
    pg_dump = binaries.tool("pg_dump", binaries.find_bin_dir())
    dumped = subprocess.run(
        [pg_dump, "-Fc", "-Z0", "--schema-only", f"--table={pattern}", f"--dbname={url}"],
        capture_output=True,
        check=False,
    )
    toc = read_toc(dumped.stdout) if dumped.returncode == 0 else None
    by_pg_dump = {e.qualified for e in toc.entries if e.desc == "TABLE"} if toc else set()

    access = catalog.scope_access(ConnInfo.parse(url), DumpScope(tables=(pattern,)))

    assert {t.qualified for t in access.tables if t.kind == "r"} == by_pg_dump


def test_pattern_conversion_follows_pg_dump() -> None:
    assert name_regexes("Public.Acc*") == name_regexes("public.acc*")
    assert name_regexes('"Mixed Case"').name == "^(Mixed Case)$"
    assert name_regexes("a.b?c").schema == "^(a)$" and name_regexes("a.b?c").name == "^(b.c)$"
    assert name_regexes('"a.b"').schema is None  # a quoted dot is part of the name
    assert name_regexes("db.s.t").schema == "^(s)$"
    assert name_regexes("price$").name == "^(price\\$)$"
    assert name_regexes('"x(1)"').name == "^(x\\(1\\))$"


# -- a role that cannot read everything ----------------------------------------------------


@pytest.fixture
def limited_role(pg: Cluster, new_database: Callable[[Cluster], str]) -> Iterator[tuple[str, str]]:
    """A database with a table `public.secret` its role may not read: (superuser URL, the
    role's URL)."""
    url = new_database(pg)
    _load(url)
    role = f"reader_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE public.secret (v text)")
        db.execute("INSERT INTO public.secret VALUES ('hush')")
        db.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'pw'").format(sql.Identifier(role)))
        for statement in (
            "GRANT USAGE ON SCHEMA public, archive TO {}",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public, archive TO {}",
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {}",
            "REVOKE SELECT ON public.secret FROM {}",
        ):
            db.execute(sql.SQL(statement).format(sql.Identifier(role)))  # type: ignore[arg-type]
    dbname = url.rsplit("/", 1)[1]
    try:
        yield url, pg.url(dbname, user=role, password="pw")
    finally:
        with psycopg.connect(url, autocommit=True) as db:
            db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        pg.drop_database(dbname)
        pg.execute(f"DROP ROLE {role}")


def test_doctor_names_the_table_the_role_cannot_read(
    limited_role: tuple[str, str], tmp_path: Path
) -> None:
    _, role_url = limited_role

    result = run_bika("doctor", "--db", role_url, "--json", cwd=tmp_path)

    assert result.returncode == 1, result.stdout
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["table access"]["status"] == "fail"
    assert "public.secret (no SELECT)" in checks["table access"]["detail"]
    assert "GRANT pg_read_all_data TO reader_" in checks["table access"]["fix"]

    (tmp_path / "bika.toml").write_text('[backup]\nexclude_table = ["public.secret"]\n')
    scoped = run_bika("doctor", "--db", role_url, "--json", cwd=tmp_path)
    assert scoped.returncode == 0, scoped.stdout
    checks = {c["name"]: c for c in json.loads(scoped.stdout)["checks"]}
    assert checks["table access"]["status"] == "ok"


def test_backup_refuses_before_dumping_when_the_role_cannot_read_a_table(
    limited_role: tuple[str, str], keyed_repo: KeyedRepo
) -> None:
    _, role_url = limited_role

    result = run_bika("backup", "--repo", str(keyed_repo.repo), "--db", role_url)

    assert_clean_error(result, "public.secret", "GRANT pg_read_all_data")
    assert "s3cret" not in result.stderr and ":pw@" not in result.stderr
    assert not (keyed_repo.repo / "backups").exists() or not any(
        (keyed_repo.repo / "backups").iterdir()
    )
    backup_id = keyed_repo.backup(role_url, "--exclude-table", "public.secret")
    assert "public.secret" not in {
        f"{t['schema']}.{t['name']}" for t in keyed_repo.manifest(backup_id)["tables"]
    }
