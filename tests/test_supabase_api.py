"""The Supabase Management API as bika reads it, against a small HTTP server on 127.0.0.1
that answers with the documented shapes and error codes: `bika supabase backups`, the
platform rule of `bika check`, and one clear line for each failure."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bika.crypto import generate_identity

from helpers import assert_clean_error, run_bika

REF = "abcdefghijklmnopqrst"
TOKEN = "sbp_0123456789abcdef0123456789abcdef01234567"
BACKUPS = {
    "region": "eu-central-1",
    "walg_enabled": True,
    "pitr_enabled": False,
    "backups": [
        {
            "id": 11,
            "is_physical_backup": False,
            "status": "COMPLETED",
            "inserted_at": "2026-12-02T03:00:00.123Z",
        },
        {
            "id": 12,
            "is_physical_backup": False,
            "status": "FAILED",
            "inserted_at": "2026-12-03T03:00:00Z",
        },
    ],
    "physical_backup_data": {},
}


@dataclass
class Api:
    url: str
    answers: dict[str, tuple[int, Any, dict[str, str]]] = field(default_factory=dict)
    seen: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.seen.append((self.path, self.headers.get("Authorization", "")))
            status, body, headers = state.answers.get(self.path, (404, {"message": "no"}, {}))
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            if "Content-Type" not in headers:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


def _env(api: Api, **extra: str) -> dict[str, str]:
    return {
        "SUPABASE_ACCESS_TOKEN": TOKEN,
        "BIKA_SUPABASE__API_URL": api.url,
        "BIKA_SUPABASE__PROJECT_REF": REF,
        "BIKA_NOW": "2026-12-03T12:00:00Z",
        **extra,
    }


PATH = f"/v1/projects/{REF}/database/backups"


def test_backups_are_listed_with_pitr_state_as_table_and_json(api: Api) -> None:
    api.answers[PATH] = (200, BACKUPS, {})
    table = run_bika("supabase", "backups", env=_env(api))
    assert table.returncode == 0, table.stderr
    assert "PITR off" in table.stdout
    assert "newest completed backup 2026-12-02T03:00:00.123000Z" in table.stdout
    assert "FAILED" in table.stdout and "logical" in table.stdout
    assert api.seen[-1] == (PATH, f"Bearer {TOKEN}")
    as_json = run_bika("supabase", "backups", "--json", env=_env(api))
    document = json.loads(as_json.stdout)
    assert document["ok"] is True
    assert document["pitr_enabled"] is False
    assert document["newest_completed"] == "2026-12-02T03:00:00.123000Z"
    assert [b["status"] for b in document["backups"]] == ["COMPLETED", "FAILED"]
    assert TOKEN not in table.stdout + table.stderr + as_json.stdout + as_json.stderr


def test_a_free_project_has_no_backups_and_says_so(api: Api) -> None:
    other = "zyxwvutsrqponmlkjihg"
    api.answers[f"/v1/projects/{other}/database/backups"] = (
        200,
        {**BACKUPS, "walg_enabled": False, "backups": []},
        {},
    )
    result = run_bika("supabase", "backups", "--project-ref", other, env=_env(api))
    assert result.returncode == 0, result.stderr
    assert f"project {other}" in result.stdout
    assert "no daily backups listed" in result.stdout


@pytest.mark.parametrize(
    ("status", "headers", "fragments"),
    [
        (401, {}, ("refused the access token", "SUPABASE_ACCESS_TOKEN")),
        (403, {}, ("may not read project", REF)),
        (404, {}, ("knows no project", "project_ref")),
        (429, {"X-RateLimit-Reset": "37"}, ("rate limiting", "120 requests a minute", "37 s")),
        (500, {}, ("HTTP 500",)),
    ],
    ids=["401", "403", "404", "429", "500"],
)
def test_api_errors_are_one_clear_line(
    api: Api, status: int, headers: dict[str, str], fragments: tuple[str, ...]
) -> None:
    api.answers[PATH] = (status, {"message": "x"}, headers)
    result = run_bika("supabase", "backups", env=_env(api))
    assert result.returncode == 1
    assert_clean_error(result, *fragments)
    assert TOKEN not in result.stderr


def test_unreachable_api_and_missing_settings(api: Api) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    result = run_bika("supabase", "backups", env=_env(api, BIKA_SUPABASE__API_URL=closed))
    assert_clean_error(result, "cannot reach the supabase api", "api_url")
    no_token = run_bika("supabase", "backups", env={**_env(api), "SUPABASE_ACCESS_TOKEN": ""})
    assert no_token.returncode == 2
    assert_clean_error(no_token, "needs a token", "SUPABASE_ACCESS_TOKEN")
    no_ref = run_bika("supabase", "backups", env={**_env(api), "BIKA_SUPABASE__PROJECT_REF": ""})
    assert_clean_error(no_ref, "--project-ref")
    bad_ref = run_bika("supabase", "backups", "--project-ref", "../x", env=_env(api))
    assert_clean_error(bad_ref, "not a project ref")


def test_check_warns_when_the_newest_platform_backup_is_over_a_day_old(
    api: Api, tmp_path: Path
) -> None:
    recipient = generate_identity(tmp_path / "key.txt")
    repo = tmp_path / "repo"
    assert run_bika("init", "--repo", str(repo), "--recipient", recipient).returncode == 0
    api.answers[PATH] = (200, BACKUPS, {})  # newest COMPLETED 33 h before BIKA_NOW
    check = run_bika("check", "--repo", str(repo), "--json", env=_env(api))
    found = [f for f in json.loads(check.stdout)["findings"] if f["what"] == "platform"]
    assert [f["level"] for f in found] == ["warn"]
    assert "33.0 h old" in found[0]["message"]
    api.answers[PATH] = (403, {}, {})
    denied = run_bika("check", "--repo", str(repo), "--json", env=_env(api))
    found = [f for f in json.loads(denied.stdout)["findings"] if f["what"] == "platform"]
    assert [f["level"] for f in found] == ["unknown"]
    assert "403" in found[0]["message"]
    # without a token the rule does not run, and nothing is asked of the API
    asked = len(api.seen)
    quiet = run_bika(
        "check", "--repo", str(repo), "--json", env={**_env(api), "SUPABASE_ACCESS_TOKEN": ""}
    )
    assert not [f for f in json.loads(quiet.stdout)["findings"] if f["what"] == "platform"]
    assert len(api.seen) == asked


POOLER = [
    {
        "identifier": REF,
        "database_type": "READ_REPLICA",
        "db_host": "aws-0-us-east-1.pooler.supabase.com",
        "db_port": 6543,
        "db_user": f"postgres.{REF}",
        "pool_mode": "transaction",
    },
    {
        "identifier": REF,
        "database_type": "PRIMARY",
        "db_host": "aws-0-eu-central-1.pooler.supabase.com",
        "db_port": 6543,
        "db_user": f"postgres.{REF}",
        "db_name": "postgres",
        "pool_mode": "transaction",
    },
]


def test_an_unreachable_direct_host_falls_back_to_the_session_pooler(api: Api) -> None:
    from bika.errors import PostgresError
    from bika.operations.supabase_api import ManagementApi
    from bika.operations.supabase_connection import reachable
    from bika.postgres.connection import ConnInfo

    api.answers[f"/v1/projects/{REF}/config/database/pooler"] = (200, POOLER, {})
    direct = ConnInfo.parse(f"postgresql://postgres:pw@db.{REF}.supabase.co:5432/postgres")
    probed: list[tuple[str, int]] = []

    def unreachable(host: str, port: int) -> bool:
        probed.append((host, port))
        return False

    notes: list[str] = []
    moved = reachable(direct, ManagementApi(TOKEN, api.url), probe=unreachable, say=notes.append)
    assert probed == [(f"db.{REF}.supabase.co", 5432)]
    params = moved.params
    assert params["host"] == "aws-0-eu-central-1.pooler.supabase.com"  # the PRIMARY's
    assert (params["port"], params["user"]) == ("5432", f"postgres.{REF}")  # session, not 6543
    assert (params["password"], params["sslmode"]) == ("pw", "require")
    assert "session pooler" in notes[0]
    assert reachable(direct, None, probe=lambda h, p: True) is direct
    with pytest.raises(PostgresError, match=r"SUPABASE_ACCESS_TOKEN.*Session pooler"):
        reachable(direct, None, probe=unreachable)
    # not a Supabase host: never probed
    other = ConnInfo.parse("postgresql://u@127.0.0.1:1/x")
    assert reachable(other, None, probe=unreachable) is other and len(probed) == 2
    api.answers[f"/v1/projects/{REF}/config/database/pooler"] = (403, {}, {})
    with pytest.raises(Exception, match="403"):
        reachable(direct, ManagementApi(TOKEN, api.url), probe=unreachable)


ANON = "eyJhbGciOi.anon-key-value-Kq9"
DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _multipart(files: dict[str, bytes]) -> tuple[bytes, str]:
    boundary = "bika-test-boundary"
    out = b""
    for name, data in files.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file";'
                f' filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def _serve_project(api: Api, site_url: str, source: bytes, secrets: list[str]) -> None:
    base = f"/v1/projects/{REF}"
    api.answers[f"{base}/config/auth"] = (
        200,
        {"site_url": site_url, "smtp_pass": "hashed", "external_github_enabled": True},
        {},
    )
    api.answers[f"{base}/api-keys"] = (200, [{"name": "anon", "api_key": ANON}], {})
    api.answers[f"{base}/network-restrictions"] = (200, {"config": {"dbAllowedCidrs": []}}, {})
    api.answers[f"{base}/ssl-enforcement"] = (200, {"currentConfig": {"database": True}}, {})
    api.answers[f"{base}/storage/buckets"] = (200, [{"id": "avatars", "public": True}], {})
    api.answers[f"{base}/functions"] = (
        200,
        [{"slug": "hello", "version": 3, "verify_jwt": True, "status": "ACTIVE"}],
        {},
    )
    body, kind = _multipart({"source/index.ts": source, "source/logo.bin": b"\xff\x00\xfe"})
    api.answers[f"{base}/functions/hello/body"] = (200, body, {"Content-Type": kind})
    api.answers[f"{base}/secrets"] = (
        200,
        [{"name": name, "value": DIGEST} for name in secrets],
        {},
    )
    # config/storage and postgrest not answered (404): kept as errors, the rest still taken


def test_each_backup_snapshots_the_project_and_diff_names_what_changed(
    api: Api, pg18: Any, new_database: Any, keyed_repo: Any, tmp_path: Path
) -> None:
    from bika.postgres import sample

    url = new_database(pg18)
    sample.load(url, "CREATE TABLE t (id int);")
    _serve_project(api, "https://app.example.org", b"Deno.serve(() => 1)\n", ["STRIPE_KEY"])
    env = {**_env(api), "XDG_STATE_HOME": str(tmp_path / "state")}
    taken = run_bika("backup", "--repo", str(keyed_repo.repo), "--db", url, "--json", env=env)
    assert taken.returncode == 0, taken.stderr
    assert "2 part(s) not readable" in taken.stderr  # config/storage, postgrest
    backup_id = json.loads(taken.stdout)["backup"]["id"]
    manifest = keyed_repo.manifest(backup_id)
    assert "project" in manifest["artifacts"]
    assert manifest["project_config"]["functions"] == 1
    assert manifest["project_config"]["secrets"] == 1
    assert manifest["project_config"]["unreadable"] == ["config/storage", "postgrest"]
    # the body's multipart files, and binary ones, are in the snapshot (decrypted by hand)
    from bika.crypto import load_identities
    from bika.operations.supabase_project import stored_snapshot
    from bika.repository import Manifest, Repository
    from bika.storage import open_storage

    repository = Repository.open(open_storage(str(keyed_repo.repo)))
    stored = stored_snapshot(
        repository, Manifest.model_validate(manifest), load_identities(keyed_repo.key)
    )
    files = stored["functions"][0]["files"]
    assert files["source/index.ts"] == {"text": "Deno.serve(() => 1)\n"}
    assert "base64" in files["source/logo.bin"]
    assert stored["secrets"] == ["STRIPE_KEY"]

    same = run_bika(
        "supabase",
        "diff",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        env=env,
    )
    assert same.returncode == 0, same.stderr
    assert "no change since" in same.stdout

    _serve_project(
        api, "https://new.example.org", b"Deno.serve(() => 2)\n", ["STRIPE_KEY", "RESEND_KEY"]
    )
    changed = run_bika(
        "supabase",
        "diff",
        backup_id,
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--json",
        env=env,
    )
    assert changed.returncode == 0, changed.stderr
    document = json.loads(changed.stdout)
    found = {(d["part"], d["item"], d["change"]) for d in document["differences"]}
    assert found == {
        ("config/auth", "site_url", "changed"),
        ("functions", "hello: files.source/index.ts.text", "changed"),
        ("secrets", "RESEND_KEY", "added"),
    }
    assert document["not_compared"] == ["config/storage", "postgrest"]
    outputs = taken.stdout + taken.stderr + same.stdout + changed.stdout + changed.stderr
    for text in [outputs, json.dumps(manifest)]:
        for value in (ANON, DIGEST, "app.example.org", "Deno.serve", TOKEN):
            assert value not in text
