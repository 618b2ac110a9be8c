"""The disaster-recovery runbook: pure tests of the renderer on constructed histories, and one
run of `bika runbook` on a real repository with a backup and a drill."""

from __future__ import annotations

import hashlib
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import psycopg
from conftest import PASSWORD
from pydantic import BaseModel

from bika import runbook
from bika.monitor import History
from bika.postgres.cluster import Cluster
from bika.repository.manifest import Manifest

from helpers import KeyedRepo, run_bika
from test_monitor import NOW, drill, manifest

RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def _facts(history: History, url: str = "/var/backups/bika", **kwargs: object) -> runbook.Facts:
    return runbook.Facts(url, [RECIPIENT], history, **kwargs)  # type: ignore[arg-type]


def test_the_newest_proven_backup_is_restored_and_a_newer_unproven_one_is_named() -> None:
    older, newer = manifest(30), manifest(2)
    text = runbook.markdown(_facts(History(NOW, [older, newer], drills=[drill(older, 1)])))
    assert f"bika restore {older.id} --repo /var/backups/bika --to postgresql://" in text
    assert "--create --identity KEY.txt" in text
    assert f"Newest proven backup: `{older.id}`" in text
    assert f"A newer backup exists, `{newer.id}`" in text
    assert "UNPROVEN" not in text


def test_without_a_passed_drill_the_newest_backup_is_flagged_unproven() -> None:
    older, newer = manifest(30), manifest(2)
    history = History(NOW, [older, newer], drills=[drill(newer, 0.01, passed=False)])
    text = runbook.markdown(_facts(history))
    assert "UNPROVEN" in text and "its drill failed" in text
    assert f"bika restore {newer.id} " in text
    assert "FAILED" in text  # the last drill's outcome next to its RTO


def test_rto_is_the_last_drill_and_rpo_the_age_of_the_newest_backup() -> None:
    backup = manifest(5)
    text = runbook.markdown(_facts(History(NOW, [backup], drills=[drill(backup, 0.1)])))
    assert "RTO (measured restore time of the last drill" in text
    assert "30.0 s" in text
    assert "RPO now: 5.0 h" in text


def test_no_drill_and_no_backup_are_said_plainly() -> None:
    text = runbook.markdown(_facts(History(NOW, [])))
    assert "RTO: unknown, no drill has run" in text
    assert "RPO: unbounded" in text
    assert "holds no backup" in text


def test_recipients_are_listed_with_a_short_fingerprint_and_labels_are_said_missing() -> None:
    text = runbook.markdown(_facts(History(NOW, [manifest(1)])))
    short = hashlib.sha256(RECIPIENT.encode()).hexdigest()[:12]
    assert f"fingerprint `{short}`: `{RECIPIENT}`" in text
    assert "labels are not stored yet" in text


def test_cloud_storage_names_its_settings_never_their_values() -> None:
    facts = _facts(
        History(NOW, [manifest(1)]),
        url="s3://bucket/prefix",
        configured=["BIKA_STORAGE__REGION"],
    )
    text = runbook.markdown(facts)
    assert "Storage kind: s3" in text
    assert "`BIKA_STORAGE__SECRET_ACCESS_KEY`" in text and "`BIKA_REPO`" in text
    assert "Set in this configuration: `BIKA_STORAGE__REGION`" in text


def test_a_backup_without_a_recorded_scope_says_it_is_whole() -> None:
    backup = manifest(1)
    text = runbook.markdown(_facts(History(NOW, [backup])))
    assert hasattr(backup, "scope") or "This bika version records no scope" in text
    assert "Role passwords" in text


class _Scope(BaseModel):
    """The shape of the manifest's `scope` (pg_dump's limits), as the scope branch records it."""

    exclude_table: list[str] = []
    exclude_table_data: list[str] = []

    @property
    def whole(self) -> bool:
        return not (self.exclude_table or self.exclude_table_data)

    def options(self) -> list[str]:
        return [f"--exclude-table={p}" for p in self.exclude_table] + [
            f"--exclude-table-data={p}" for p in self.exclude_table_data
        ]


class _ScopedManifest(Manifest):
    scope: _Scope = _Scope()


def test_a_limited_scope_lists_what_the_backup_leaves_out() -> None:
    data = manifest(1).model_dump(by_alias=True)
    limited = _ScopedManifest.model_validate(
        {**data, "scope": {"exclude_table": ["audit.*"], "exclude_table_data": ["public.log"]}}
    )
    text = runbook.markdown(_facts(History(NOW, [limited])))
    assert "was taken with these pg\\_dump limits" in text
    assert "- `--exclude-table=audit.*`" in text
    assert "- `--exclude-table-data=public.log`" in text
    assert "there without their rows" in text
    whole = _ScopedManifest.model_validate({**data, "scope": {}})
    assert "holds the whole database." in runbook.markdown(_facts(History(NOW, [whole])))


def test_hostile_names_stay_data_in_markdown_and_html() -> None:
    hostile: Manifest = manifest(1, database="x`<script>alert(1)</script>\x1b[2J")
    history = History(NOW, [hostile], drills=[drill(hostile, 0.01)])
    md = runbook.markdown(_facts(history))
    assert "\x1b" not in md
    assert "### Database x\\`\\<script\\>" in md  # markup characters escaped
    page = runbook.html(_facts(history))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "\x1b" not in page
    # the database name in commands is percent-encoded, not shell text
    assert "postgresql://USER@NEW-HOST/x%60%3Cscript%3E" in md


def test_bika_runbook_on_a_real_repository(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo, tmp_path: Path
) -> None:
    url = new_database(pg18)
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE members (id int PRIMARY KEY, name text)")
        db.execute("INSERT INTO members SELECT g, 'm' || g FROM generate_series(1, 50) g")
    backup_id = keyed_repo.backup(url)
    drilled = run_bika(
        "drill", backup_id, "--repo", str(keyed_repo.repo), "-i", str(keyed_repo.key)
    )
    assert drilled.returncode == 0, drilled.stderr

    secret = "topsecret-storage-value"
    env = {"BIKA_DATABASE_URL": url, "BIKA_STORAGE__SECRET_ACCESS_KEY": secret}
    result = run_bika("runbook", "--repo", str(keyed_repo.repo), "--markdown", env=env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"bika restore {backup_id} --repo {keyed_repo.repo}" in text
    assert "--create --identity KEY.txt" in text
    assert hashlib.sha256(keyed_repo.recipient.encode()).hexdigest()[:12] in text
    assert "RTO" in text and "RPO now" in text
    assert "UNPROVEN" not in text
    assert "Set in this configuration: `BIKA_STORAGE__SECRET_ACCESS_KEY`" in text
    assert PASSWORD not in text + result.stderr and secret not in text + result.stderr
    # the fingerprint command the runbook gives names this repository's key
    command = re.search(r"`(printf .*?)`", text)
    assert command is not None
    shell = command.group(1).replace("KEY", shlex.quote(str(keyed_repo.key)))
    printed = subprocess.run(["sh", "-c", shell], capture_output=True, text=True, check=True)
    assert f"fingerprint `{printed.stdout.strip()}`: `{keyed_repo.recipient}`" in text

    page = tmp_path / "runbook.html"
    written = run_bika(
        "runbook", "--repo", str(keyed_repo.repo), "--html", "--output", str(page), env=env
    )
    assert written.returncode == 0, written.stderr
    assert written.stdout == ""
    html = page.read_text()
    assert html.startswith("<!doctype html>") and backup_id in html
    assert PASSWORD not in html and secret not in html
