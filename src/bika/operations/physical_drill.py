"""`bika drill --physical`: restore a base backup and every archived WAL segment after it into
a throwaway cluster of the source's major version, recover to the end of the archive, then
pg_amcheck and exact row counts; the record (RTO, measured RPO) goes to physical/<id>/drills/.

The WAL is fetched and decrypted by bika itself into a spool the server copies from, so the
server's OS user needs neither bika nor the key.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bika import clock
from bika.operations.pitr import plan_recovery, restore_physical
from bika.operations.wal_status import wal_state
from bika.postgres import binaries
from bika.postgres.cluster import Cluster, _free_port, _server_account, _server_programs
from bika.postgres.recovery import (
    Target,
    exact_counts,
    open_for_checks,
    own_for_server,
    pg_amcheck_argv,
    recover,
    server_bin_dir,
)
from bika.repository import Repository
from bika.repository import physical as store
from bika.repository.physical import PhysicalDrill
from bika.stream import decode
from bika.wal import names


def drill_physical(
    repo: Repository,
    identities: list[object],
    backup_id: str | None = None,
    *,
    pg_bin_dir: str | None = None,
    parent: Path | None = None,
) -> PhysicalDrill:
    started = clock.now()
    plan = plan_recovery(repo, identities, Target(), backup_id=backup_id)
    backup = plan.backup
    major = backup.source.server_version_num // 10000
    bin_dir = server_bin_dir(major, pg_bin_dir)
    work = Path(tempfile.mkdtemp(prefix="bika-drill-", dir=parent or "/tmp"))
    work.chmod(0o755)
    problems: list[str] = []
    try:
        began = time.monotonic()
        spool = work / "wal"
        spool.mkdir()
        _spool_wal(repo, identities, backup.wal.start_segment, plan.timeline, spool, backup)
        own_for_server(spool)
        data_dir = work / "data"
        done = restore_physical(
            repo,
            identities,
            plan,
            data_dir,
            restore_command=f"cp '{spool}/%f' '%p'",
            start=False,
            pg_bin_dir=pg_bin_dir,
        )
        restored = time.monotonic()
        recovered = recover(bin_dir, done.data_dir)
        replayed = time.monotonic()
        shutil.rmtree(spool, ignore_errors=True)
        open_for_checks(data_dir)
        cluster = _start(bin_dir, data_dir, work)
        user = backup.source.user or "postgres"
        try:
            amcheck = _amcheck(cluster, user)
            if amcheck != "ok":
                problems.append(f"pg_amcheck: {amcheck}")
            databases, counts = exact_counts(cluster.url(user=user))
        finally:
            cluster.stop()
        checked = time.monotonic()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    state = wal_state(repo)
    rpo = None
    last = _parse_log_time(recovered.last_transaction)
    if state is not None and state.newest_at is not None and last is not None:
        rpo = max(0.0, (state.newest_at - last).total_seconds())
    record = PhysicalDrill(
        backup_id=backup.id,
        repository_id=repo.id,
        passed=not problems,
        started_at=started,
        finished_at=clock.now(),
        server_version=backup.source.server_version,
        timeline=recovered.timeline,
        recovered_to=recovered.last_transaction,
        last_segment=plan.last_segment,
        restore_seconds=round(restored - began, 3),
        recovery_seconds=round(replayed - restored, 3),
        check_seconds=round(checked - replayed, 3),
        rto_seconds=round(replayed - began, 3),
        rpo_seconds=round(rpo, 3) if rpo is not None else None,
        databases=databases,
        tables=sum(len(t) for t in counts.values()),
        rows=sum(sum(t.values()) for t in counts.values()),
        amcheck=amcheck,
        problems=problems,
    )
    store.record_drill(repo, record)
    return record


def _spool_wal(
    repo: Repository,
    identities: list[object],
    start_segment: str,
    timeline: int,
    spool: Path,
    backup: store.PhysicalManifest,
) -> None:
    size = backup.source.wal_segment_size
    start = names.parse_segment(start_segment, size).number
    for info in repo.storage.list(names.WAL_PREFIX):
        parsed = names.parse_object(info.key)
        if parsed is None:
            continue
        name = parsed[0]
        if names.is_history(name):
            wanted = int(name[:8], 16) <= timeline
        else:
            part = names.segment_part(name)
            segment = names.parse_segment(part, size) if part else None
            wanted = (
                segment is not None
                and segment.timeline <= timeline
                and segment.number >= start
                and not name.endswith(".partial")
            )
        if wanted:
            with repo.storage.open(info.key) as source, open(spool / name, "wb") as sink:
                decode(source, sink, identities, name=info.key)


def _start(bin_dir: Path, data_dir: Path, work: Path) -> Cluster:
    account = _server_account()
    socket_dir = work / "socket"
    socket_dir.mkdir()
    if account is not None:
        os.chown(work, account.pw_uid, account.pw_gid)  # its server.log goes there
        os.chown(socket_dir, account.pw_uid, account.pw_gid)
        bin_dir = _server_programs(bin_dir, account, work)
    cluster = Cluster(
        bin_dir,
        data_dir,
        _free_port("127.0.0.1"),
        version=binaries.tool_version(bin_dir / "postgres"),
        socket_dir=socket_dir,
        settings={"archive_mode": "off"},
        os_user=account,
    )
    cluster.start()
    return cluster


def _amcheck(cluster: Cluster, user: str) -> str:
    tool = binaries.tool("pg_amcheck", binaries.embedded_bin_dir())
    done = subprocess.run(
        pg_amcheck_argv(tool, str(cluster.socket_dir), cluster.port, user),
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if done.returncode == 0:
        return "ok"
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return " | ".join(lines[-3:]) or f"exit {done.returncode}"


def _parse_log_time(text: str | None) -> datetime | None:
    """PostgreSQL's log time "2026-12-03 14:33:49.123456+00"."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None
