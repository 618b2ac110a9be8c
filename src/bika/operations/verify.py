"""Checking backups: every artifact is there with its size, and with --read-data every byte
decrypts, decompresses, hashes as recorded and holds the tables the manifest lists.

--read-data-subset reads a deterministic share of the artifacts per run (see Subset).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date

from bika.errors import BikaError, ConfigError, DumpError, UnusableBackup
from bika.findings import Finding
from bika.postgres import binaries
from bika.postgres.archive import ArchiveTap
from bika.postgres.pg_restore import listed_tables
from bika.repository import Artifact, Manifest, Repository
from bika.storage import Source
from bika.stream import Progress, StreamStats, decode


@dataclass
class VerifyResult:
    backup_id: str
    read_data: bool
    problems: list[Finding] = field(default_factory=list)
    """Each an error finding whose `what` is the artifact ("database", "globals", "manifest")."""
    read: list[str] = field(default_factory=list)
    """Artifacts whose every byte was read (all of them with --read-data, a share with a
    subset)."""
    read_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


_SPACE = 1 << 64
_SHARE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


@dataclass(frozen=True)
class Subset:
    """A deterministic share of the repository's artifacts, for --read-data-subset.

    Every artifact has a fixed place on a circle of 2**64 points: the first 8 bytes of the
    sha256 of its key. `n/t` cuts the circle into t equal arcs and selects the n-th, so
    running 1/t … t/t reads everything once. `P%` selects an arc of P % that moves on by P %
    every UTC day (day d starts at d × P % of the circle, d counted from 1970-01-01), so a
    daily run reads every artifact within ceil(100 / P) days: 15 % covers a week."""

    start: int
    width: int
    text: str

    def contains(self, key: str) -> bool:
        return (place(key) - self.start) % _SPACE < self.width


def place(key: str) -> int:
    """Where an artifact sits on the circle (stable: it depends on its key only)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def parse_subset(text: str, today: date) -> Subset:
    """`n/t` or `P%` (see Subset); `today` (UTC) places the arc of a percentage."""
    share = _SHARE.match(text)
    if share:
        n, t = int(share.group(1)), int(share.group(2))
        if not 1 <= n <= t:
            raise ConfigError(f"--read-data-subset {text}: n/t needs 1 ≤ n ≤ t, e.g. 1/7")
        start, end = (n - 1) * _SPACE // t, n * _SPACE // t
        return Subset(start, end - start, f"{n}/{t}")
    percent = _PERCENT.match(text)
    if percent:
        value = float(percent.group(1))
        if not 0 < value <= 100:
            raise ConfigError(f"--read-data-subset {text}: a percentage must be > 0 and ≤ 100")
        width = min(_SPACE, round(value / 100 * _SPACE))
        day = (today - date(1970, 1, 1)).days
        return Subset(day * width % _SPACE, width, f"{percent.group(1)}%")
    raise ConfigError(
        f"--read-data-subset {text!r}: give n/t (the n-th of t groups, e.g. 1/7) or a"
        " percentage (e.g. 10%)"
    )


def open_manifest(repo: Repository, backup_id: str, *, read_data: bool) -> Manifest | VerifyResult:
    """The backup's manifest; or, when it cannot be used (damaged, or another repository's),
    that backup's failed result: one bad manifest is not the end of the run."""
    try:
        return repo.manifest(backup_id)
    except UnusableBackup as exc:
        result = VerifyResult(backup_id, read_data=read_data)
        result.problems.append(Finding("error", "manifest", str(exc)))
        return result


def bytes_to_read(manifest: Manifest, subset: Subset | None = None) -> int:
    """Stored bytes verify_backup reads with identities: the whole backup, or subset's share."""
    return sum(
        artifact.stored_size
        for artifact in manifest.artifacts.values()
        if subset is None or subset.contains(artifact.key)
    )


def verify_backup(
    repo: Repository,
    manifest: Manifest,
    *,
    identities: list[object] | None = None,
    pg_bin_dir: str | None = None,
    subset: Subset | None = None,
    progress: Progress | None = None,
) -> VerifyResult:
    """Without identities: presence and sizes. With them: every byte (--read-data) of every
    artifact, or of those in `subset`. progress gets the plaintext and stored bytes read so far
    in this backup (of bytes_to_read)."""
    result = VerifyResult(manifest.id, read_data=identities is not None)
    plain_read = 0
    for name, artifact in manifest.artifacts.items():
        info = repo.storage.stat(artifact.key)
        if info is None:
            result.problems.append(Finding("error", name, f"{artifact.key} is missing"))
            continue
        if info.size != artifact.stored_size:
            result.problems.append(
                Finding(
                    "error",
                    name,
                    f"{artifact.key} is {info.size} bytes, the manifest says"
                    f" {artifact.stored_size} (truncated or replaced)",
                )
            )
            continue
        if identities is not None and (subset is None or subset.contains(artifact.key)):
            result.read.append(name)
            counted = _offset(progress, plain_read, result.read_bytes)
            result.read_bytes += artifact.stored_size
            plain_read += artifact.plain_size
            try:
                _read_artifact(repo, manifest, name, artifact, identities, pg_bin_dir, counted)
            except BikaError as exc:
                result.problems.append(Finding("error", name, str(exc)))
    return result


def _offset(progress: Progress | None, plain: int, stored: int) -> Progress | None:
    """progress for one artifact, counted on from what the backup's earlier ones read."""
    if progress is None:
        return None
    return lambda p, s: progress(plain + p, stored + s)


def _read_artifact(
    repo: Repository,
    manifest: Manifest,
    name: str,
    artifact: Artifact,
    identities: list[object],
    pg_bin_dir: str | None,
    progress: Progress | None,
) -> None:
    label = f"{manifest.id}/{name}"
    tap = ArchiveTap() if artifact.content == "pg_dump-custom" else None
    with repo.storage.open(artifact.key) as source:
        if tap is None:
            stats = decode(source, _Discard(), identities, name=label, progress=progress)
            toc_tables: set[str] | None = None
        else:
            stats, toc_tables = _decode_listing(
                source, tap, identities, label, pg_bin_dir, progress
            )
    if stats.stored_sha256 != artifact.stored_sha256 or stats.stored_size != artifact.stored_size:
        raise _mismatch(label, "stored bytes", artifact.stored_sha256, stats.stored_sha256)
    if stats.plain_sha256 != artifact.plain_sha256 or stats.plain_size != artifact.plain_size:
        raise _mismatch(label, "plaintext", artifact.plain_sha256, stats.plain_sha256)
    if tap is None:
        return
    summary = tap.finish()
    wrong = sorted(
        (dump_id, offset)
        for dump_id, offset in (artifact.data_offsets or {}).items()
        if summary.data_offsets.get(dump_id) != offset
    )
    if wrong:
        dump_id, offset = wrong[0]
        actual = summary.data_offsets.get(dump_id)
        raise DumpError(
            f"{label}: {len(wrong)} of the manifest's data offsets do not point at their data"
            f" block (dump id {dump_id}: {offset}, the archive has it at"
            f" {actual if actual is not None else 'no data block'}): restore --jobs and drill"
            " would fail; the manifest was edited or damaged, restore with one job"
        )
    found = {(t.schema, t.name): t for t in summary.tables}
    for table in manifest.tables:
        got = found.pop((table.schema_, table.name), None)
        if got is None:
            raise DumpError(f"{label}: table {table.qualified} is not in the dump")
        if got.rows != table.rows or got.sha256 != table.sha256:
            raise DumpError(
                f"{label}: table {table.qualified} holds {got.rows} rows (hash"
                f" {got.sha256[:12]}), the manifest says {table.rows} ({table.sha256[:12]})"
            )
    if found:
        raise DumpError(f"{label}: the dump holds tables the manifest lacks: {sorted(found)}")
    if toc_tables is not None:
        expected = {f"{t.schema_} {t.name}" for t in manifest.tables}
        if toc_tables != expected:
            missing = sorted(expected - toc_tables) or sorted(toc_tables - expected)
            raise DumpError(
                f"{label}: pg_restore --list shows different tables than the manifest: {missing}"
            )


def _mismatch(label: str, what: str, expected: str, got: str) -> BikaError:
    from bika.errors import IntegrityError

    return IntegrityError(
        f"{label}: sha256 of the {what} is {got[:16]}…, the manifest says {expected[:16]}…"
    )


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


class _TeeToList:
    """Feeds the plaintext to the archive reader and to `pg_restore --list` until it has
    read the table of contents and exits."""

    def __init__(self, tap: ArchiveTap, write: Callable[[bytes], object]) -> None:
        self._tap = tap
        self._write: Callable[[bytes], object] | None = write

    def write(self, data: bytes) -> int:
        self._tap.feed(data)
        if self._write is not None:
            try:
                self._write(data)
            except (BrokenPipeError, ValueError):
                self._write = None  # pg_restore has what it needs
        return len(data)


def _decode_listing(
    source: Source,
    tap: ArchiveTap,
    identities: list[object],
    label: str,
    pg_bin_dir: str | None,
    progress: Progress | None,
) -> tuple[StreamStats, set[str]]:
    pg_restore = binaries.tool("pg_restore", binaries.find_bin_dir(pg_bin_dir))

    def feed(write: Callable[[bytes], object]) -> StreamStats:
        return decode(source, _TeeToList(tap, write), identities, name=label, progress=progress)

    return listed_tables(pg_restore, feed, label)
