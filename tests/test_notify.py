"""Notifications: what is sent on which change of state (pure), and that apprise delivers it to
a real HTTP receiver on 127.0.0.1; a receiver that is down fails nothing."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bika.notify import Message, ping, send, transition
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, run_bika
from storage.servers import free_port


class Receiver:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.gets: list[str] = []
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                received.posts.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(200)
                self.end_headers()

            def do_GET(self) -> None:
                received.gets.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_only_a_change_of_state_is_sent() -> None:
    assert transition(None, "OK", "r", "") is None
    assert transition("OK", "OK", "r", "") is None
    assert transition("CRITICAL", "CRITICAL", "r", "still") is None
    alert = transition("OK", "CRITICAL", "s3://b/p", "newest backup 30 h old")
    assert alert is not None and alert.kind == "failure"
    assert "CRITICAL" in alert.title and "s3://b/p" in alert.title
    assert alert.body == "newest backup 30 h old"
    first = transition(None, "WARNING", "r", "no drill")
    assert first is not None and first.kind == "warning"
    recovered = transition("CRITICAL", "OK", "r", "")
    assert recovered is not None and recovered.kind == "success" and "recovered" in recovered.title


def test_apprise_json_delivers_one_post(receiver: Receiver) -> None:
    url = f"json://127.0.0.1:{receiver.port}/alerts"
    assert send([url], Message("bika: backups CRITICAL (r)", "pg_dump failed", "failure"))
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    assert post["path"] == "/alerts"
    assert post["title"] == "bika: backups CRITICAL (r)"
    assert post["message"] == "pg_dump failed"
    assert post["type"] == "failure"


def test_a_receiver_that_is_down_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    url = f"json://127.0.0.1:{free_port()}/alerts"
    assert send([url, "notaurl"], Message("t", "b", "failure")) is False
    assert "notify" in caplog.text
    assert ping(f"http://127.0.0.1:{free_port()}/ping/abc") is False


def test_heartbeat_pings_and_reports_failure(receiver: Receiver) -> None:
    base = f"http://127.0.0.1:{receiver.port}/ping/abc"
    assert ping(base) and ping(base, failed=True)
    assert receiver.gets == ["/ping/abc", "/ping/abc/fail"]


def test_one_alert_for_a_failed_backup_none_while_unchanged_one_when_recovered(
    pg18: Cluster,
    new_database: Callable[[Cluster], str],
    keyed_repo: KeyedRepo,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    url = new_database(pg18)
    with psycopg.connect(url) as db:
        db.execute("CREATE TABLE members (id int PRIMARY KEY)")
        db.execute("INSERT INTO members SELECT generate_series(1, 100)")
    config = tmp_path / "bika.toml"
    config.write_text(
        f'repo = "{keyed_repo.repo}"\n'
        f'database_url = "{url}"\n'
        f'identity = "{keyed_repo.key}"\n'
        f'notify = ["json://127.0.0.1:{receiver.port}/alerts"]\n'
    )

    def bika(*args: str) -> int:
        return run_bika("--config", str(config), *args).returncode

    assert bika("backup") == 0 and bika("drill", "latest") == 0
    assert bika("check") == 0
    assert receiver.posts == []  # healthy from the start: nothing to say
    broken = psycopg.conninfo.make_conninfo(url, password="wrong-password")
    assert bika("backup", "--db", broken) == 1
    assert len(receiver.posts) == 1
    alert = receiver.posts[0]
    assert alert["type"] == "failure" and "backup failed" in alert["title"]
    assert "password authentication failed" in alert["message"]
    assert "wrong-password" not in json.dumps(receiver.posts)
    assert bika("check") == 2 and bika("check") == 2  # critical, but already said
    assert len(receiver.posts) == 1
    assert bika("backup") == 0
    assert bika("check") == 0
    assert len(receiver.posts) == 2
    assert receiver.posts[1]["type"] == "success" and "recovered" in receiver.posts[1]["title"]
