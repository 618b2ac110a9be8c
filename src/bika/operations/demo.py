"""The embedded default: a throwaway server with sample data, backed up, verified, restored
and drilled. It shows on one machine, with nothing else installed, that every step works.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bika.crypto import generate_identity, load_identities
from bika.operations.backup import BackupOptions, take_backup
from bika.operations.drill import DrillOptions, run_drill
from bika.operations.restore import RestoreOptions, RestoreReport, restore_backup
from bika.operations.verify import VerifyResult, verify_backup
from bika.postgres import sample
from bika.postgres.cluster import start_cluster
from bika.postgres.connection import ConnInfo
from bika.repository import Manifest, Repository
from bika.repository.drills import DrillRecord
from bika.storage.local import LocalStorage
from bika.units import count, size

SOURCE_DB = "ibimina"
RESTORED_DB = "ibimina_restored"


@dataclass
class DemoResult:
    folder: Path
    repo: Repository
    key: Path
    manifest: Manifest
    verified: VerifyResult
    restored: RestoreReport  # restore_backup raises RowsDiffer when a table's rows differ
    drill: DrillRecord

    @property
    def passed(self) -> bool:
        return self.verified.ok and self.drill.passed


def run_demo(folder: Path, say: Callable[[str], None]) -> DemoResult:
    """Everything happens under folder; the server is stopped and removed at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    say("starting a throwaway PostgreSQL server (embedded 18)")
    with start_cluster(password=secrets.token_urlsafe(12)) as cluster:
        say(f"  listening on {cluster.host}:{cluster.port} ({cluster.version})")
        url = cluster.create_database(SOURCE_DB)
        say(f"creating the sample savings-group database {SOURCE_DB!r}")
        sample.load(url, sample.SAVINGS_GROUP_SQL)

        key = folder / "key.txt"
        recipient = generate_identity(key)
        say(f"generated an age key: {key} (public key {recipient[:16]}…)")
        repo = Repository.init(LocalStorage(folder / "repo"), [recipient])
        say(f"initialised the repository {repo.url}")

        manifest = take_backup(repo, ConnInfo.parse(url), BackupOptions(label="bika demo"))
        say(
            f"backed up: {manifest.id}, {len(manifest.tables)} tables,"
            f" {count(manifest.total_rows)} rows, {size(manifest.plain_size)} dumped →"
            f" {size(manifest.stored_size)} stored"
        )

        identities = load_identities(key)
        verified = verify_backup(repo, manifest, identities=identities)
        say(
            "verified with --read-data: "
            + ("ok" if verified.ok else "; ".join(p.message for p in verified.problems))
        )

        target = ConnInfo.parse(cluster.url(RESTORED_DB))
        restored = restore_backup(repo, manifest, target, identities, RestoreOptions(create=True))
        say(f"restored into {RESTORED_DB!r} in {restored.seconds:.1f}s")

        # the drill restores once more, into a scratch database it drops afterwards, and
        # recomputes every table's exact rows and content hash from the restored data
        drill = run_drill(
            repo, manifest, identities, DrillOptions(target=cluster.url()), say=say
        ).record
        say(
            f"drill {'passed' if drill.passed else 'FAILED'}: {drill.tables_checked} tables,"
            f" {count(drill.rows_checked)} rows, {drill.objects_checked} schema objects checked;"
            f" restore took {drill.restore_seconds:.1f}s (the measured RTO)"
        )
    return DemoResult(folder, repo, key, manifest, verified, restored, drill)
