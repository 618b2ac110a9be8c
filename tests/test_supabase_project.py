"""A Supabase project around its database: the Edge Functions folder (from git, or the disk)
and the environment secrets go into each backup, come back with `restore --artifact`, and no
secret value ever appears in the manifest, the run log or any output."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bika.postgres import sample
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, assert_clean_error, run_bika

SERVICE_KEY = "eyJhbGciOiJIUzI1NiJ9.service-role-Zq7xK"
SENTRY = "https://a1b2c3@o42.ingest.sentry.io/7"
SHORT = "hunter2"
MULTILINE = 'line one\nline "two" $HOME'


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        check=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org",
        },
    )
    return done.stdout.strip()


def _project(root: Path) -> Path:
    """A project checkout: two functions, config.toml, a migration, and an unrelated file."""
    functions = root / "supabase" / "functions"
    (functions / "hello").mkdir(parents=True)
    (functions / "hello" / "index.ts").write_text('Deno.serve(() => new Response("hi"))\n')
    (functions / "_shared").mkdir()
    (functions / "_shared" / "cors.ts").write_text("export const cors = {}\n")
    (root / "supabase" / "config.toml").write_text('project_id = "demo"\n')
    (root / "supabase" / "migrations").mkdir()
    (root / "supabase" / "migrations" / "20260101000000_init.sql").write_text("select 1;\n")
    (root / "README.md").write_text("not part of the functions\n")
    return functions


def _config(path: Path, functions: Path | None, env_file: Path | None) -> Path:
    lines = []
    if functions is not None:
        lines += ["[supabase]", f'functions_dir = "{functions}"']
    if env_file is not None:
        lines += ["[secrets]", f'env_files = ["{env_file}"]', 'env = ["SENTRY_DSN", "SMS_KEY"]']
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def database(pg18: Cluster, new_database: Callable[[Cluster], str]) -> str:
    url = new_database(pg18)
    sample.load(url, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2);")
    return url


def _backup(repo: KeyedRepo, url: str, config: Path, env: dict[str, str]) -> dict[str, object]:
    result = run_bika(
        "backup", "--repo", str(repo.repo), "--db", url, "--config", str(config), "--json", env=env
    )
    assert result.returncode == 0, result.stderr
    backup_id = json.loads(result.stdout)["backup"]["id"]
    manifest = repo.repo / "backups" / backup_id / "manifest.json"
    return {"id": backup_id, "manifest": json.loads(manifest.read_text()), "result": result}


def test_functions_from_git_and_secrets_round_trip_and_no_value_leaks(
    keyed_repo: KeyedRepo, database: str, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    functions = _project(project)
    _git(project, "init", "-q")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "functions")
    commit = _git(project, "rev-parse", "HEAD")
    # a change not committed: warned about, and not in the backup
    (functions / "hello" / "index.ts").write_text("uncommitted edit\n")
    env_file = tmp_path / ".env.production"
    env_file.write_text(
        "# production\n"
        f"SUPABASE_SERVICE_ROLE_KEY={SERVICE_KEY}\n"
        f"export DB_PASSWORD='{SHORT}'\n"
        'NOTE="line one\\nline \\"two\\" $HOME"\n'
    )
    config = _config(tmp_path / "bika.toml", functions, env_file)
    state = tmp_path / "state"
    env = {"SENTRY_DSN": SENTRY, "XDG_STATE_HOME": str(state)}

    taken = _backup(keyed_repo, database, config, env)
    result = taken["result"]
    assert isinstance(result, subprocess.CompletedProcess)
    assert "uncommitted change" in result.stderr
    assert "SMS_KEY" in result.stderr  # configured, not set: said, and listed as unset
    manifest = taken["manifest"]
    assert isinstance(manifest, dict)
    assert manifest["functions"]["source"] == "git"
    assert manifest["functions"]["commit"] == commit
    assert manifest["functions"]["uncommitted"] is True
    assert manifest["functions"]["paths"] == [
        "supabase/functions",
        "supabase/config.toml",
        "supabase/migrations",
    ]
    assert set(manifest["artifacts"]) >= {"database", "functions", "env"}
    inventory = manifest["secrets"]
    assert [e["name"] for e in inventory["entries"]] == [
        "SUPABASE_SERVICE_ROLE_KEY",
        "DB_PASSWORD",
        "NOTE",
        "SENTRY_DSN",
    ]
    assert inventory["unset"] == ["SMS_KEY"]
    assert (state / "bika" / "inventory-key").stat().st_mode & 0o777 == 0o600

    backup_id = str(taken["id"])
    out = tmp_path / "restored"
    unpacked = run_bika(
        "restore",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--artifact",
        "functions",
        "--to-dir",
        str(out),
    )
    assert unpacked.returncode == 0, unpacked.stderr
    assert (out / "supabase/functions/hello/index.ts").read_text() == (
        'Deno.serve(() => new Response("hi"))\n'
    )
    assert (out / "supabase/functions/_shared/cors.ts").exists()
    assert (out / "supabase/config.toml").read_text() == 'project_id = "demo"\n'
    assert (out / "supabase/migrations/20260101000000_init.sql").exists()
    assert not (out / "README.md").exists()

    env_out = tmp_path / ".env.restored"
    restored = run_bika(
        "restore",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--artifact",
        "env",
        "--to-file",
        str(env_out),
    )
    assert restored.returncode == 0, restored.stderr
    assert stat.S_IMODE(env_out.stat().st_mode) == 0o600
    from bika.supabase.secrets import parse_env

    values = {s.name: s.value for s in parse_env(env_out.read_text(), "x")}
    assert values == {
        "SUPABASE_SERVICE_ROLE_KEY": SERVICE_KEY,
        "DB_PASSWORD": SHORT,
        "NOTE": MULTILINE,
        "SENTRY_DSN": SENTRY,
    }
    again = run_bika(
        "restore",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--artifact",
        "env",
        "--to-file",
        str(env_out),
    )
    assert_clean_error(again, "exists", "never overwritten")

    verified = run_bika(
        "verify",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--read-data",
        "--identity",
        str(keyed_repo.key),
        "--json",
    )
    assert verified.returncode == 0, verified.stdout
    assert set(json.loads(verified.stdout)["backups"][0]["read"]) >= {"functions", "env"}

    # the values appear nowhere but in the encrypted artifact and the restored file
    text_show = run_bika("show", backup_id, "--repo", str(keyed_repo.repo))
    assert f"functions   4 files from git commit {commit}" in text_show.stdout
    assert "secrets     4 values kept (encrypted): SUPABASE_SERVICE_ROLE_KEY" in text_show.stdout
    assert "not set when it ran: SMS_KEY" in text_show.stdout
    shown = [
        text_show,
        run_bika("show", backup_id, "--repo", str(keyed_repo.repo), "--json"),
        run_bika("list", "--repo", str(keyed_repo.repo)),
        run_bika("check", "--repo", str(keyed_repo.repo), "--json", env=env),
        run_bika("config", "show", "--config", str(config), env=env),
        run_bika("secrets", "template", "--repo", str(keyed_repo.repo)),
    ]
    texts = [p.stdout + p.stderr for p in (result, unpacked, restored, again, verified, *shown)]
    for path in keyed_repo.repo.rglob("*.json"):
        texts.append(path.read_text())
    for text in texts:
        for value in (SERVICE_KEY, SENTRY, SHORT, "line one", "service-role"):
            assert value not in text
    template = shown[-1].stdout
    assert "Sentry DSN (SENTRY_DSN): in bika's env artifact" in template
    assert "Redis URL (REDIS_URL): [stored in password manager]" in template
    assert "- DB_PASSWORD: in bika's env artifact" in template


def test_changed_and_missing_secrets_are_reported_by_check(
    keyed_repo: KeyedRepo, database: str, tmp_path: Path
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"JWT_SECRET={SHORT}\n")
    config = _config(tmp_path / "bika.toml", None, env_file)
    env = {"SENTRY_DSN": SENTRY, "SMS_KEY": "k1", "XDG_STATE_HOME": str(tmp_path / "state")}
    first = _backup(keyed_repo, database, config, env)
    env_file.write_text("OTHER=1\n")
    second = _backup(keyed_repo, database, config, {**env, "SENTRY_DSN": SENTRY + "x"})
    assert first["id"] != second["id"]
    check = run_bika("check", "--repo", str(keyed_repo.repo), "--json", env=env)
    findings = [f for f in json.loads(check.stdout)["findings"] if f["what"] == "secrets"]
    messages = " / ".join(f["message"] for f in findings)
    assert f"SENTRY_DSN changed since backup {first['id']}" in messages
    assert "JWT_SECRET missing from the last backup" in messages
    assert SHORT not in check.stdout + check.stderr


def test_functions_folder_outside_git_is_archived_as_it_is(
    keyed_repo: KeyedRepo, database: str, tmp_path: Path
) -> None:
    functions = _project(tmp_path / "plain")
    (functions / "hello" / "link").symlink_to("index.ts")
    taken = _backup(keyed_repo, database, _config(tmp_path / "b.toml", functions, None), {})
    manifest = taken["manifest"]
    assert isinstance(manifest, dict)
    assert manifest["functions"]["source"] == "folder"
    assert manifest["functions"]["commit"] is None
    assert manifest["functions"]["files"] == 4
    out = tmp_path / "out"
    unpacked = run_bika(
        "restore",
        str(taken["id"]),
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--artifact",
        "functions",
        "--to-dir",
        str(out),
        "--json",
    )
    assert unpacked.returncode == 0, unpacked.stderr
    assert json.loads(unpacked.stdout)["count"] == 4
    assert os.readlink(out / "supabase/functions/hello/link") == "index.ts"
    busy = run_bika(
        "restore",
        str(taken["id"]),
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--artifact",
        "functions",
        "--to-dir",
        str(out),
    )
    assert_clean_error(busy, "not an empty folder")


def test_missing_env_file_fails_the_backup_before_dumping(
    keyed_repo: KeyedRepo, database: str, tmp_path: Path
) -> None:
    config = _config(tmp_path / "bika.toml", None, tmp_path / ".env.typo")
    result = run_bika(
        "backup", "--repo", str(keyed_repo.repo), "--db", database, "--config", str(config)
    )
    assert result.returncode == 2
    assert_clean_error(result, ".env.typo", "does not exist")
    assert not list((keyed_repo.repo / "backups").glob("*/manifest.json"))


def test_restore_of_an_artifact_the_backup_lacks_says_so(
    keyed_repo: KeyedRepo, database: str, tmp_path: Path
) -> None:
    taken = _backup(keyed_repo, database, _config(tmp_path / "e.toml", None, None), {})
    result = run_bika(
        "restore",
        str(taken["id"]),
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--artifact",
        "functions",
        "--to-dir",
        str(tmp_path / "d"),
    )
    assert_clean_error(result, "no functions artifact")
    wrong = [
        ("--artifact", "env", "--to", "postgresql://x@127.0.0.1/db"),
        ("--artifact", "functions", "--to-file", str(tmp_path / "f")),
        ("--artifact", "env", "--to-dir", str(tmp_path / "d")),
        ("--to-dir", str(tmp_path / "d")),
    ]
    for options in wrong:
        refused = run_bika(
            "restore",
            str(taken["id"]),
            "--repo",
            str(keyed_repo.repo),
            "--identity",
            str(keyed_repo.key),
            *options,
        )
        assert refused.returncode == 2, (options, refused.stderr)
        assert_clean_error(refused, "--")
