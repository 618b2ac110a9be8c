"""pg_receivewal's argv, for `bika wal receive`: streaming a server's WAL over a physical
replication slot into a local folder."""

from __future__ import annotations

from pathlib import Path


def pg_receivewal_argv(
    tool: Path, conninfo: str, directory: Path, slot: str, *, synchronous: bool
) -> list[str]:
    # --no-loop: a lost connection ends it, and the caller restarts it (saying why)
    argv = [str(tool), f"--dbname={conninfo}", f"--directory={directory}", f"--slot={slot}"]
    return [*argv, "--no-loop", *(["--synchronous"] if synchronous else [])]


def create_slot_argv(tool: Path, conninfo: str, slot: str) -> list[str]:
    """Creates the physical slot unless it exists, then exits."""
    return [str(tool), f"--dbname={conninfo}", f"--slot={slot}", "--create-slot", "--if-not-exists"]


def said(stderr: str) -> str:
    """pg_receivewal's error without its name: the first error line, which says what failed."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line] or lines
    return errors[0].split(": error: ", 1)[-1] if errors else ""
