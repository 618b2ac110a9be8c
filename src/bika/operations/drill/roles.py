"""The backup's roles in a drill's throwaway cluster, so that ownership and privileges restore too;
where that cannot be done the restore goes on with --no-owner --no-privileges, and says so.
"""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Literal

from bika.postgres import catalog
from bika.postgres import supabase as pg_supabase
from bika.postgres.archive import ArchiveToc
from bika.postgres.cluster import Cluster
from bika.postgres.connection import ConnInfo
from bika.postgres.pg_restore import load_roles, without_role
from bika.repository import Manifest, Repository
from bika.stream import decode

ROLES_LIMIT = 64 << 20  # a roles script is kilobytes; refuse to hold an absurd one in memory

Owners = Literal["restored", "skipped"]


def prepare_roles(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    conn: ConnInfo,
    cluster: Cluster | None,
    toc: ArchiveToc,
    bin_dir: Path,
    notes: list[str],
) -> Owners:
    """Create the backup's roles in a throwaway cluster so ownership and grants restore too;
    "skipped" (restore with --no-owner) where that cannot be done, with a note saying why."""
    owners = sorted({e.owner for e in toc.entries if e.owner})
    if cluster is None:
        notes.append(
            "ownership and privileges were not restored: the drill leaves a --target server's"
            " roles alone (restored with --no-owner --no-privileges)"
        )
        return "skipped"
    globals_ = manifest.artifacts.get("globals")
    if globals_ is None:
        notes.append(
            "the backup holds no roles (" + (manifest.roles.detail or "not saved") + "):"
            " restored with --no-owner --no-privileges"
        )
        return "skipped"
    failed = _restore_roles(repo, manifest, identities, cluster, bin_dir)
    present = catalog.role_names(conn)
    absent = [o for o in owners if o not in present]
    if failed or absent:
        why = failed or f"role(s) {', '.join(absent[:4])} missing after it"
        notes.append(
            f"the backup's roles could not all be created ({why}): restored with --no-owner"
            " --no-privileges"
        )
        return "skipped"
    return "restored"


def _restore_roles(
    repo: Repository,
    manifest: Manifest,
    identities: list[object],
    cluster: Cluster,
    bin_dir: Path,
) -> str | None:
    """Run the globals script (roles) in the cluster; the first unexpected error, if any."""
    artifact = manifest.artifacts["globals"]
    if artifact.plain_size > ROLES_LIMIT:
        return f"the roles script is {artifact.plain_size} bytes"
    plain = BytesIO()
    with repo.storage.open(artifact.key) as source:
        decode(source, plain, identities, name=f"{manifest.id}/globals")
    script = without_role(plain.getvalue(), cluster.superuser)
    if manifest.profile == "supabase":  # its roles artifact holds the custom roles only
        script = pg_supabase.platform_roles_sql().encode() + script
    return load_roles(bin_dir, ConnInfo.parse(cluster.url("postgres")), script)
