"""Choosing a backup by time, and leaving archive entries out of a restore plan: no servers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bika.errors import BackupNotFound
from bika.operations.restore import Finding, RestorePlan, Selection, exclude_entries
from bika.postgres.preflight import ArchiveToc, TocEntry
from bika.repository import Manifest, Repository, TableStats
from bika.storage.local import LocalStorage

NOON = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)


def _commit(repo: Repository, backup_id: str, started: datetime) -> None:
    manifest = Manifest(
        tool="bika test",
        id=backup_id,
        repository_id=repo.id,
        kind="daily",
        started_at=started,
        finished_at=started + timedelta(seconds=1),
        source={
            "database": "db",
            "host_hash": "0" * 16,
            "server_version": "18.1",
            "pg_dump_version": "18.1",
        },
        artifacts={},
        tables=[],
        roles={"status": "skipped"},
    )
    repo.commit(manifest)


@pytest.fixture
def same_second(tmp_path: Path) -> Repository:
    """Three backups: two started within one second, whose ids sort the other way round."""
    repo = Repository.init(LocalStorage(tmp_path / "repo"), ["age1test"])
    _commit(repo, "20261120T115959Z-daily-0000", NOON - timedelta(seconds=1))
    _commit(repo, "20261120T120000Z-daily-ffff", NOON + timedelta(milliseconds=100))
    _commit(repo, "20261120T120000Z-daily-0001", NOON + timedelta(milliseconds=700))
    return repo


def test_latest_is_the_backup_that_started_last_even_within_one_second(
    same_second: Repository,
) -> None:
    assert same_second.latest() == "20261120T120000Z-daily-0001"
    assert same_second.resolve("latest") == "20261120T120000Z-daily-0001"


def test_before_tells_backups_of_one_second_apart_by_their_manifests(
    same_second: Repository,
) -> None:
    assert same_second.before(NOON + timedelta(milliseconds=500)) == "20261120T120000Z-daily-ffff"
    assert same_second.before(NOON) == "20261120T115959Z-daily-0000"
    with pytest.raises(BackupNotFound, match="no backup started before"):
        same_second.before(NOON - timedelta(seconds=1))


def test_manifests_come_in_the_order_the_backups_started(same_second: Repository) -> None:
    assert [m.id for m in same_second.scan()[0]] == [
        "20261120T115959Z-daily-0000",
        "20261120T120000Z-daily-ffff",
        "20261120T120000Z-daily-0001",
    ]


def test_latest_of_an_empty_repository_says_so(tmp_path: Path) -> None:
    repo = Repository.init(LocalStorage(tmp_path / "repo"), ["age1test"])
    with pytest.raises(BackupNotFound, match="holds no backups yet"):
        repo.resolve("latest")


def test_latest_passes_over_a_damaged_newest_manifest_and_says_so(
    same_second: Repository, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    newest = "20261120T120000Z-daily-0001"
    (tmp_path / "repo" / "backups" / newest / "manifest.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="bika"):
        assert same_second.latest() == "20261120T120000Z-daily-ffff"
    assert any(newest in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)


def test_excluded_entries_leave_the_selection_and_settle_their_findings() -> None:
    def entry(i: int, desc: str, tag: str, *deps: int) -> TocEntry:
        namespace = None if desc == "EXTENSION" else "public"
        return TocEntry(
            dump_id=i,
            desc=desc,
            section=2,
            namespace=namespace,
            tag=tag,
            owner="postgres",
            dependencies=deps,
        )

    entries = [
        entry(1, "EXTENSION", "vector"),
        entry(2, "TABLE", "items", 1),
        entry(3, "TABLE DATA", "items", 2),
        entry(4, "TABLE", "notes"),
        entry(5, "TABLE DATA", "notes", 4),
    ]
    toc = ArchiveToc((1, 16, 0), "db", "18.6", "18.6", tuple(entries))
    findings = [
        Finding("ok", "tools", "pg_restore 18.6 reads archives of pg_dump 18.6"),
        Finding("error", "extensions", "extension vector is not installed", frozenset({1})),
        Finding("error", "owners", "role app is missing", frozenset({2, 4})),
    ]
    tables = [
        TableStats(schema="public", name=name, rows=1, sha256="", bytes=1)
        for name in ("items", "notes")
    ]
    plan = RestorePlan(
        "b", "db", toc, Selection(entries, True, False), findings, None, tables, "18.6"
    )

    narrowed = exclude_entries(plan, {1, 2, 3}, "needs extension vector")

    assert [e.dump_id for e in narrowed.selection.entries] == [4, 5]
    assert narrowed.selection.use_list
    assert [(e.dump_id, why) for e, why in narrowed.selection.left_out] == [
        (1, "needs extension vector"),
        (2, "needs extension vector"),
        (3, "needs extension vector"),
    ]
    assert [(f.check, f.entries) for f in narrowed.findings] == [
        ("tools", frozenset()),
        ("owners", frozenset({4})),
    ]
    assert [t.name for t in narrowed.tables] == ["notes"]
    assert len(plan.selection.entries) == 5  # the plan given is left as it was
