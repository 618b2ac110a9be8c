"""The drill's scratch database: a throwaway embedded cluster, or a fresh database on a --target
server; discarded afterwards, or kept (with --keep) with what it takes to reach it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bika.errors import PostgresError
from bika.postgres import catalog
from bika.postgres.cluster import Cluster, start_cluster
from bika.postgres.connection import ConnInfo, first_lines
from bika.repository.drills import DrillTarget

SCRATCH_DATABASE = "bika_drill"

# Nobody queries a drill's cluster but the drill: autovacuum would only compete with the
# restore's index builds and the fingerprints for the CPU.
CLUSTER_SETTINGS = {"autovacuum": "off"}

Say = Callable[[str], None]


def cluster_settings(jobs: int, cores: int) -> dict[str, str]:
    """The drill cluster's settings for a restore with `jobs` pg_restore jobs: parallel index
    builds only with cores to spare, since each job already keeps a core busy (on 2 cores and 2
    jobs, the extra workers made drills slower)."""
    spare = max(0, cores // max(1, jobs) - 1)
    return {**CLUSTER_SETTINGS, "max_parallel_maintenance_workers": str(min(spare, 4))}


@dataclass
class Scratch:
    """Where the drill restores: the database, what it runs on, and how long it took to get."""

    conn: ConnInfo
    target: DrillTarget
    cluster: Cluster | None
    seconds: float
    kept: str | None = None


@contextmanager
def scratch_database(
    target: str | None, *, keep: bool, workdir: Path | None, jobs: int, say: Say
) -> Iterator[Scratch]:
    """A new scratch database on `target` (a server URL), or in a throwaway embedded cluster
    (None) made in `workdir`; removed on exit unless `keep`."""
    started = time.monotonic()
    if target is None:
        say("starting a throwaway PostgreSQL server (embedded)")
        cluster = start_cluster(
            parent=workdir,
            password=secrets.token_urlsafe(18),
            fast=True,
            settings=cluster_settings(jobs, os.cpu_count() or 1),
        )
        scratch: Scratch | None = None
        try:
            url = cluster.create_database(SCRATCH_DATABASE)
            scratch = Scratch(
                ConnInfo.parse(url),
                DrillTarget(
                    kind="embedded", server_version=cluster.version, database=SCRATCH_DATABASE
                ),
                cluster,
                time.monotonic() - started,
            )
            yield scratch
        finally:
            if keep and scratch is not None:
                cluster.stop()
                scratch.kept = _keep(cluster, workdir)
            else:
                _discard(cluster)
        return
    server = ConnInfo.parse(target)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    name = f"{SCRATCH_DATABASE}_{stamp}_{secrets.token_hex(3)}"
    version = catalog.server_version(server)
    try:
        catalog.create_database(server, name)
    except Exception as exc:
        raise PostgresError(
            f"cannot create the drill's scratch database on {server.redacted()}:"
            f" {first_lines(str(exc))}; the role needs CREATEDB"
        ) from None
    say(f"created scratch database {name!r} on {server.redacted()}")
    conn = server.with_database(name)
    on_server = Scratch(
        conn,
        DrillTarget(
            kind="server", server_version=version, host_hash=server.host_hash(), database=name
        ),
        None,
        time.monotonic() - started,
    )
    try:
        yield on_server
    finally:
        if keep:
            on_server.kept = f"scratch database kept: {conn.redacted()}"
        else:
            catalog.drop_database(server, name)


def _discard(cluster: Cluster) -> None:
    """Stop the drill's cluster and delete its folder without waiting for the deletion: the
    drill's result is known, and deleting a restored database's files takes a while."""
    cluster.stop()
    folders = [cluster.data_dir.parent]
    if not cluster.socket_dir.is_relative_to(folders[0]):
        folders.append(cluster.socket_dir)
    try:
        # the shell starts rm in the background and returns: rm outlives bika if need be
        subprocess.run(
            ["/bin/sh", "-c", 'rm -rf -- "$@" &', "sh", *map(str, folders)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            check=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        cluster.remove()


def _keep(cluster: Cluster, workdir: Path | None) -> str:
    """Leave a stopped drill cluster behind (out of the scratch folder, which goes when bika
    does), with what it takes to start and enter it."""
    folder = Path(tempfile.mkdtemp(prefix="bika-drill-", dir=workdir)).resolve()
    cluster.move(folder)
    secret = folder / "superuser-password"
    secret.write_text(f"{cluster.password}\n")
    secret.chmod(0o600)
    as_user = f" as OS user {cluster.os_user.pw_name}" if cluster.os_user else ""
    return (
        f"kept the stopped drill cluster in {folder}: start it with 'pg_ctl -D"
        f" {cluster.data_dir} -l {cluster.log_path} start'{as_user}, connect to database"
        f" {SCRATCH_DATABASE} on 127.0.0.1:{cluster.port} as postgres (password in {secret});"
        f" delete the folder when done"
    )
