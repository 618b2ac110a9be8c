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
            data = json.dumps(body).encode()
            self.send_response(status)
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
