"""verify --read-data-subset: n/t and P% select a deterministic share of the artifacts, the
groups of n/t cover everything once, and a daily P% covers everything within 100/P days.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from bika.errors import ConfigError
from bika.operations.verify import parse_subset
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, run_bika

KEYS = [f"backups/20261125T{i:06d}Z-daily-{i:04x}/database.pgdump.zst.age" for i in range(2000)]
TODAY = date(2026, 11, 25)


def _chosen(text: str, day: date = TODAY) -> set[str]:
    subset = parse_subset(text, day)
    return {key for key in KEYS if subset.contains(key)}


def test_n_of_t_groups_cover_every_artifact_exactly_once() -> None:
    groups = [_chosen(f"{n}/7") for n in range(1, 8)]
    assert sum(len(g) for g in groups) == len(KEYS)
    assert set().union(*groups) == set(KEYS)
    for group in groups:
        assert abs(len(group) - len(KEYS) / 7) < 0.2 * len(KEYS) / 7
    # the same group every day: it depends on the artifact's key only
    assert _chosen("3/7", TODAY + timedelta(days=1)) == groups[2]
    assert _chosen("1/1") == set(KEYS)


def test_a_percentage_rotates_daily_and_covers_everything() -> None:
    days = math.ceil(100 / 15)
    daily = [_chosen("15%", TODAY + timedelta(days=d)) for d in range(days)]
    assert set().union(*daily) == set(KEYS)  # a week of daily 15 % runs reads every artifact
    for chosen in daily:
        assert abs(len(chosen) - 0.15 * len(KEYS)) < 0.03 * len(KEYS)
    assert daily[0] != daily[1]
    assert _chosen("15%") == daily[0]  # deterministic: the same day picks the same share
    # consecutive days' windows follow each other without overlap (until they wrap around)
    assert not daily[0] & daily[1]
    assert _chosen("100%") == set(KEYS)


@pytest.mark.parametrize("text", ["0/7", "8/7", "0%", "101%", "half", "1/0", "-5%"])
def test_a_malformed_subset_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="read-data-subset"):
        parse_subset(text, TODAY)


def test_verify_reads_each_artifact_in_exactly_one_group(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> None:
    url = new_database(pg18)
    pg18.execute(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'ikimina')",
        url.rsplit("/", 1)[1],
    )
    ids = [keyed_repo.backup(url) for _ in range(3)]
    artifacts = {f"{i}/{name}" for i in ids for name in ("database", "globals")}
    damaged_id = ids[1]
    damaged = keyed_repo.repo / "backups" / damaged_id / "database.pgdump.zst.age"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, so only reading the bytes can tell
    damaged.chmod(0o600)
    damaged.write_bytes(bytes(data))

    read: dict[str, set[str]] = {}
    failed: dict[str, set[str]] = {}
    for group in ("1/3", "2/3", "3/3"):
        result = run_bika(
            "verify",
            "--repo",
            str(keyed_repo.repo),
            "--identity",
            str(keyed_repo.key),
            "--read-data-subset",
            group,
            "--json",
        )
        report = json.loads(result.stdout)
        assert report["read_data_subset"] == group
        read[group] = {f"{b['id']}/{name}" for b in report["backups"] for name in b["read"]}
        failed[group] = {b["id"] for b in report["backups"] if not b["ok"]}
        assert result.returncode == (1 if failed[group] else 0)

    assert set().union(*read.values()) == artifacts
    assert sum(len(r) for r in read.values()) == len(artifacts)
    holder = next(g for g, r in read.items() if f"{damaged_id}/database" in r)
    assert failed == {g: ({damaged_id} if g == holder else set()) for g in read}

    summary = run_bika(
        "verify",
        "--repo",
        str(keyed_repo.repo),
        "--identity",
        str(keyed_repo.key),
        "--read-data-subset",
        "100%",
    )
    assert summary.returncode == 1
    assert "with --read-data-subset 100% (6 artifacts read" in summary.stdout
