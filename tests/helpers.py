"""Test helpers: running the bika command as a user would, and small repository fixtures.

The CLI runs in a subprocess so exit codes, stdout/stderr and tracebacks are the real ones.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

# Debian's postgresql-15 package; BIKA_TEST_PG15_BIN points elsewhere on other systems.
PG15_BIN = Path(os.environ.get("BIKA_TEST_PG15_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class KeyedRepo:
    repo: Path
    key: Path
    recipient: str

    def list(self) -> list[dict[str, Any]]:
        result = run_bika("list", "--repo", str(self.repo), "--json")
        assert result.returncode == 0, result.stderr
        backups: list[dict[str, Any]] = json.loads(result.stdout)["backups"]
        return backups

    def backup(self, url: str, *extra: str) -> str:
        result = run_bika("backup", "--repo", str(self.repo), "--db", url, *extra)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def manifest(self, backup_id: str) -> dict[str, Any]:
        path = self.repo / "backups" / backup_id / "manifest.json"
        data: dict[str, Any] = json.loads(path.read_text())
        return data


@dataclass
class Offsite:
    """A repository URL on an emulated cloud and the environment that reaches it."""

    backend: str
    url: str
    env: dict[str, str]
    server: Any


# Settings a developer's shell may hold that would send a test to a real cloud.
_CLOUD_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GCE_")
_CLOSED = "127.0.0.1:9"  # the discard port: nothing listens, a connection fails at once
OFFLINE = {
    "AWS_EC2_METADATA_DISABLED": "true",  # boto3
    "AWS_METADATA_ENDPOINT": f"http://{_CLOSED}",  # obstore's instance-role lookup
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AZURE_MSI_ENDPOINT": f"http://{_CLOSED}/metadata/identity/oauth2/token",
    "GCE_METADATA_HOST": _CLOSED,
    "GCE_METADATA_IP": _CLOSED,
    "NO_GCE_CHECK": "True",
}


def offline_env(environ: dict[str, str]) -> dict[str, str]:
    """environ without cloud settings, and with every metadata service pointed nowhere."""
    kept = {
        k: v
        for k, v in environ.items()
        if not k.startswith(_CLOUD_PREFIXES) and k != "STORAGE_EMULATOR_HOST"
    }
    return {**kept, **OFFLINE}


def run_bika(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    base = offline_env({k: v for k, v in os.environ.items() if not k.startswith("BIKA_")})
    base.pop("DATABASE_URL", None)
    # a developer's own ~/.config/bika/bika.toml must not reach the tests
    base["XDG_CONFIG_HOME"] = "/nonexistent/bika-tests"
    return subprocess.run(
        [sys.executable, "-m", "bika", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def run_bika_json(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[int, Any]:
    """Run a bika command with --json: its exit code and the parsed JSON it printed (the one CLI
    driver the tests share; run_bika when the text output matters)."""
    result = run_bika(*args, "--json", env=env, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """A failure as users should see it: non-zero exit, one line on stderr, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("bika: error")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), lines[0]


def row_counts(url: str, tables: tuple[tuple[str, str], ...]) -> dict[str, int]:
    """Exact rows of each table ("schema.name" → count), its partitions' rows not included."""
    with psycopg.connect(url) as db:
        return {
            f"{schema}.{name}": db.execute(
                psycopg.sql.SQL("SELECT count(*) FROM ONLY {}").format(
                    psycopg.sql.Identifier(schema, name)
                )
            ).fetchone()[0]  # type: ignore[index]
            for schema, name in tables
        }


def wait_for(
    condition: Callable[[], bool], seconds: float = 20, what: str = "the condition"
) -> None:
    """Poll until condition() holds; fail the test after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_for_partial(
    repo: Path, proc: subprocess.Popen[str], minimum: int = 1 << 20, seconds: float = 120
) -> None:
    """Until a running backup into a local repository has a temp object of `minimum` bytes:
    the moment to interrupt it midstream."""

    def partial() -> bool:
        assert proc.poll() is None, "the backup finished before it could be interrupted"
        temp = (repo / "backups").rglob(".tmp-*")
        return any(p.stat().st_size >= minimum for p in temp if p.exists())

    wait_for(partial, seconds, "a partial upload")
