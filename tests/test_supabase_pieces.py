"""The pure pieces of a Supabase project's artifacts: .env text read and written back
unchanged, the keyed inventory, tar members that may not leave the target folder, and a
hostile functions artifact refused by restore. No database server."""

from __future__ import annotations

import io
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict

from bika.crypto import generate_identity, load_identities, parse_recipients
from bika.errors import ConfigError, RestoreError
from bika.operations.supabase_artifacts import restore_functions
from bika.operations.supabase_secrets import inventory_key, prepare_secrets
from bika.postgres.connection import ConnInfo
from bika.repository import Manifest, Repository
from bika.storage import open_storage
from bika.stream import encode
from bika.supabase.endpoints import Endpoint, endpoint, gssapi_hint, session_pooler
from bika.supabase.functions import checked_member, layout
from bika.supabase.secrets import Secret, key_id, parse_env, render_env, template, value_hash

NAMES = st.from_regex(r"[A-Z_][A-Z0-9_]{0,12}", fullmatch=True)
VALUES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


# no deadline: on a busy machine (the suite's other xdist workers) one example may take 200 ms
@settings(deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=6))
def test_env_text_reads_back_what_was_written(pairs: list[tuple[str, str]]) -> None:
    secrets = [Secret(n, v, "env") for n, v in pairs]
    back = parse_env(render_env(secrets), "x")
    assert [(s.name, s.value) for s in back] == pairs


def test_env_files_as_people_write_them() -> None:
    text = (
        "# comment\n\nexport A=1\nB = two words # trailing\nC='it''s $raw\\n'\n"
        'D="multi\nline"\nE=\n'
    )
    got = {s.name: s.value for s in parse_env(text, ".env")}
    assert got == {"A": "1", "B": "two words", "C": "it", "D": "multi\nline", "E": ""}
    with pytest.raises(ConfigError, match=r"\.env line 2: not NAME=value"):
        parse_env("A=1\njust words\n", ".env")
    with pytest.raises(ConfigError, match="never closed"):
        parse_env('A="open\n', ".env")


def test_inventory_hashes_depend_on_the_key_and_name_but_show_no_value() -> None:
    one, two = b"k" * 32, b"j" * 32
    assert value_hash(one, "A", "hunter2") == value_hash(one, "A", "hunter2")
    assert value_hash(one, "A", "hunter2") != value_hash(two, "A", "hunter2")
    assert value_hash(one, "A", "x") != value_hash(one, "B", "x")
    assert len(value_hash(one, "A", "x")) == 16 and key_id(one) != key_id(two)


def test_the_host_key_is_made_once_private_and_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    first = inventory_key(None)
    assert inventory_key(None) == first and len(first) == 32
    assert (tmp_path / "bika" / "inventory-key").stat().st_mode & 0o777 == 0o600
    assert inventory_key("given") == b"given"
    extra = prepare_secrets([], ["SET", "UNSET"], "given", environ={"SET": "s3cr3t-Zq7"})
    fields = extra.manifest_fields()["secrets"]
    assert [e.name for e in fields.entries] == ["SET"] and fields.unset == ["UNSET"]
    assert "s3cr3t" not in fields.model_dump_json()


def test_layout_keeps_the_supabase_folder_siblings(tmp_path: Path) -> None:
    shaped = layout(tmp_path / "app" / "supabase" / "functions", {"config.toml"})
    assert shaped.root == tmp_path / "app"
    assert shaped.members == ("supabase/functions", "supabase/config.toml")
    alone = layout(tmp_path / "edge", {"config.toml"})
    assert (alone.root, alone.members) == (tmp_path, ("edge",))


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize(
    "member",
    [
        _member("/etc/passwd"),
        _member("../outside"),
        _member("supabase/../../outside"),
        _member("a/link", tarfile.SYMTYPE, "../../etc"),
        _member("a/link", tarfile.SYMTYPE, "/etc/passwd"),
        _member("hard", tarfile.LNKTYPE, "../x"),
        _member("dev", tarfile.CHRTYPE),
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "symlink-up", "symlink-abs", "hardlink", "device"],
)
def test_members_leaving_the_folder_are_refused(member: tarfile.TarInfo, tmp_path: Path) -> None:
    with pytest.raises(RestoreError):
        checked_member(member, tmp_path)


def test_members_inside_are_placed_under_the_folder(tmp_path: Path) -> None:
    assert checked_member(_member("supabase/functions/a.ts"), tmp_path) == (
        tmp_path / "supabase" / "functions" / "a.ts"
    )
    assert checked_member(_member("a/b/l", tarfile.SYMTYPE, "../c"), tmp_path)


def test_a_hostile_functions_artifact_writes_nothing_outside(tmp_path: Path) -> None:
    key = tmp_path / "key.txt"
    recipient = generate_identity(key)
    repo = Repository.init(open_storage(str(tmp_path / "repo")), [recipient])
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        for name, data in (("supabase/functions/ok.ts", b"ok"), ("../escaped", b"bad")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    backup_id = "20261203T120000Z-manual-0001"
    object_key = repo.artifact_key(backup_id, "functions.tar.zst.age")
    with repo.storage.create(object_key) as sink:
        stats = encode(io.BytesIO(tar_bytes.getvalue()), sink, parse_recipients([recipient]))
    now = datetime(2026, 12, 3, 12, tzinfo=UTC)
    manifest = Manifest.model_validate(
        {
            "tool": "t",
            "id": backup_id,
            "repository_id": repo.id,
            "kind": "manual",
            "started_at": now,
            "finished_at": now,
            "source": {
                "database": "d",
                "host_hash": "h",
                "server_version": "18",
                "pg_dump_version": "18",
            },
            "artifacts": {
                "functions": {
                    "key": object_key,
                    "content": "tar",
                    "codecs": ["zstd", "age"],
                    "stored_size": stats.stored_size,
                    "stored_sha256": stats.stored_sha256,
                    "plain_size": stats.plain_size,
                    "plain_sha256": stats.plain_sha256,
                }
            },
            "tables": [],
            "roles": {"status": "saved"},
        }
    )
    dest = tmp_path / "out" / "d"
    with pytest.raises(RestoreError, match="outside the target folder"):
        restore_functions(repo, manifest, load_identities(key), dest)
    assert not (tmp_path / "out" / "escaped").exists()
    assert not dest.exists()  # what was unpacked before the refusal is gone


def test_template_marks_what_bika_keeps() -> None:
    page = template("2026-12-03", ["SENTRY_DSN", "CUSTOM"])
    assert page.startswith("# Environment Variables Backup\nDate: 2026-12-03\n")
    assert "- Sentry DSN (SENTRY_DSN): in bika's env artifact" in page
    assert "- Anon Key (SUPABASE_ANON_KEY): [stored in password manager]" in page
    assert "## Other variables bika keeps\n- CUSTOM: in bika's env artifact" in page


REF = "abcdefghijklmnopqrst"


@pytest.mark.parametrize(
    ("url", "sslmode"),
    [
        (f"postgresql://postgres:pw@db.{REF}.supabase.co:5432/postgres", "require"),
        (
            f"postgresql://postgres.{REF}@aws-0-eu-west-2.pooler.supabase.com:5432/postgres",
            "require",
        ),
        (f"postgresql://postgres@db.{REF}.supabase.co/postgres?sslmode=verify-full", "verify-full"),
        (f"host=db.{REF}.supabase.co user=postgres dbname=postgres", "require"),
        ("postgresql://app@db.example.com:5432/app", None),
    ],
    ids=["direct", "pooler", "given", "key-value", "other-host"],
)
def test_supabase_hosts_get_tls_by_default(url: str, sslmode: str | None) -> None:
    assert ConnInfo.parse(url).params.get("sslmode") == sslmode


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres.{REF}:pw@aws-0-eu-west-2.pooler.supabase.com:6543/postgres",
        f"postgresql://postgres:pw@db.{REF}.supabase.co:6543/postgres",
    ],
    ids=["supavisor", "pgbouncer"],
)
def test_the_transaction_pooler_is_refused_with_the_reason(url: str) -> None:
    with pytest.raises(ConfigError, match=r"transaction mode.*one session.*port 5432") as caught:
        ConnInfo.parse(url)
    assert "pw" not in str(caught.value)


def test_endpoints_and_the_pooler_rewrite() -> None:
    assert endpoint({"host": f"db.{REF}.supabase.co"}) == Endpoint("direct", REF)
    assert endpoint({"host": "aws-1-x.pooler.supabase.com", "user": f"postgres.{REF}"}) == (
        Endpoint("pooler", REF)
    )
    assert endpoint({"host": "supabase.co.evil.example"}) is None
    moved = conninfo_to_dict(
        session_pooler(f"postgresql://postgres:pw@db.{REF}.supabase.co/postgres", "p.h", REF)
    )
    assert (moved["host"], moved["port"], moved["user"]) == ("p.h", "5432", f"postgres.{REF}")
    said = "received invalid response to GSSAPI negotiation: S"
    assert "gssencmode=disable" in gssapi_hint(said)
    assert gssapi_hint("password authentication failed") == ""


def test_snapshot_diff_names_changes_and_skips_unreadable_parts() -> None:
    from bika.supabase.project import Difference, diff, snapshot

    old = snapshot(
        REF,
        "t0",
        {
            "config/auth": {"site_url": "a", "smtp": {"host": "h"}},
            "api-keys": [{"name": "anon", "api_key": "k1"}],
            "postgrest": {"max_rows": 1},
        },
        [
            {"slug": "f", "meta": {"version": 1}, "files": {"i.ts": {"text": "1"}}},
            {"slug": "gone", "meta": {}, "files": {}},
        ],
        ["A", "B"],
        {},
    )
    new = snapshot(
        REF,
        "t1",
        {
            "config/auth": {"site_url": "b", "smtp": {"host": "h"}, "mfa": True},
            "api-keys": [{"name": "anon", "api_key": "k2"}],
            "postgrest": {"max_rows": 9},
        },
        [{"slug": "f", "meta": {"version": 2}, "files": {"i.ts": {"text": "1"}}}],
        ["B", "C"],
        {"postgrest": "403"},
    )
    assert diff(old, new) == [
        Difference("api-keys", "[anon].api_key", "changed"),
        Difference("config/auth", "mfa", "added"),
        Difference("config/auth", "site_url", "changed"),
        Difference("functions", "f: meta.version", "changed"),
        Difference("functions", "gone", "removed"),
        Difference("secrets", "A", "removed"),
        Difference("secrets", "C", "added"),
    ]
    assert diff(old, old) == []


def test_api_shapes_that_are_not_the_documented_ones_are_one_line() -> None:
    from bika.supabase.api import SupabaseApiError, parse_backups, pooler_address
    from bika.supabase.project import function_files

    with pytest.raises(SupabaseApiError, match="unexpected shape"):
        parse_backups(REF, {"backups": [{"status": "COMPLETED"}]})
    with pytest.raises(SupabaseApiError, match="Session pooler"):
        pooler_address(REF, [{"database_type": "PRIMARY"}])
    assert pooler_address(REF, {"db_host": "h.pooler.supabase.com"}) == (
        "h.pooler.supabase.com",
        5432,
        f"postgres.{REF}",
    )
    assert function_files(b"\x00eszip", "application/octet-stream") == {
        "(bundle)": {"base64": "AGVzemlw"}
    }


def test_secrets_settings_are_checked() -> None:
    from bika.config import load_settings

    given = load_settings(environ={"BIKA_SECRETS__ENV": "SENTRY_DSN, REDIS_URL"})
    assert given.secrets.env == ["SENTRY_DSN", "REDIS_URL"] and given.secrets.wanted
    with pytest.raises(ConfigError, match="not an environment variable name"):
        load_settings(environ={"BIKA_SECRETS__ENV": "A=B"})
    with pytest.raises(ConfigError, match="not a project ref"):
        load_settings(environ={"BIKA_SUPABASE__PROJECT_REF": "Bad/Ref"})
    token = load_settings(environ={"SUPABASE_ACCESS_TOKEN": "sbp_x"}).supabase.access_token
    assert token is not None and token.get_secret_value() == "sbp_x"


def _git(cwd: Path, *args: str) -> str:
    import os
    import subprocess

    who = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }
    return subprocess.run(
        ["git", "-C", str(cwd), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **who},
    ).stdout.strip()


def _names(extra: object) -> list[str]:
    from bika.operations.supabase_functions import FunctionsExtra

    assert isinstance(extra, FunctionsExtra)
    with extra.open() as stream, tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
        return sorted(m.name for m in tar if m.isfile())


def test_functions_come_from_the_commit_or_the_disk_with_a_reason(tmp_path: Path) -> None:
    from bika.operations.supabase_functions import prepare_functions

    root = tmp_path / "app"
    functions = root / "supabase" / "functions"
    (functions / "hello").mkdir(parents=True)
    (functions / "hello" / "index.ts").write_text("1")
    (root / "supabase" / "config.toml").write_text("x")
    _git(root, "init", "-q")
    (root / "other.txt").write_text("o")
    _git(root, "add", "other.txt")
    _git(root, "commit", "-qm", "without the functions")
    outside = prepare_functions(functions)
    assert outside.git is None
    assert any("is not in commit" in w for w in outside.warnings)
    assert _names(outside) == ["supabase/config.toml", "supabase/functions/hello/index.ts"]

    _git(root, "add", ".")
    _git(root, "commit", "-qm", "functions")
    clean = prepare_functions(functions)
    assert clean.git is not None and clean.git.commit == _git(root, "rev-parse", "HEAD")
    assert clean.warnings == []
    assert _names(clean) == ["supabase/config.toml", "supabase/functions/hello/index.ts"]
    assert clean.manifest_fields()["functions"].files == 2

    (functions / "new.ts").write_text("untracked")
    dirty = prepare_functions(functions)
    assert any("1 uncommitted change" in w for w in dirty.warnings)
    assert "supabase/functions/new.ts" not in _names(dirty)
    with pytest.raises(ConfigError, match="not a folder"):
        prepare_functions(tmp_path / "nowhere")
