"""A backup's database archive as stored in the repository: the keys checked before anything
else, its table of contents read from the start, the whole decrypted into a sink or into a
private file. What restore, export and drill read a stored archive with.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bika import scratch
from bika.background import Background
from bika.crypto import HEADER_PROBE_SIZE, header_probe, opens
from bika.errors import DumpError, IdentityError, IntegrityError, RestoreError
from bika.postgres.archive import ArchiveToc, read_toc, write_data_offsets
from bika.repository import Artifact, Manifest, Repository
from bika.storage import Sink, read_range
from bika.stream import Progress, StreamStats, decode

# Spare room kept on a disk beyond what a restore or an export is expected to write.
DISK_MARGIN = 64 << 20


@dataclass(frozen=True)
class StoredArchive:
    """The backup's database artifact in the repository, with the keys that open it."""

    repo: Repository
    artifact: Artifact
    identities: list[object]
    label: str  # "<backup id>/database", for messages

    @classmethod
    def of(cls, repo: Repository, manifest: Manifest, identities: list[object]) -> StoredArchive:
        return cls(repo, manifest.artifacts["database"], identities, f"{manifest.id}/database")

    def check_identity(self) -> None:
        """Fail before touching any database if none of the identities opens the archive."""
        check_identity(self.repo, self.artifact.key, self.identities, self.label)

    def read_toc(self) -> ArchiveToc:
        """The TOC from the start of the archive, reading no further than it."""
        return read_archive_toc(self.repo, self.artifact, self.identities, self.label)

    def decode(self, sink: Sink, progress: Progress | None = None) -> StreamStats:
        """Decrypt and decompress the archive into sink."""
        with self.repo.storage.open(self.artifact.key) as source:
            return decode(source, sink, self.identities, name=self.label, progress=progress)

    def save(self, file: IO[bytes], progress: Progress | None = None) -> bool:
        """Write the archive into a new file (open for writing and reading); True if it is
        the archive the manifest describes (sha256), and then with the data offsets a
        streamed archive lacks put into its TOC (another archive's would mislead pg_restore)."""
        stats = self.decode(file, progress)
        if not self.matches(stats):
            return False
        if self.artifact.data_offsets:
            write_data_offsets(file, self.artifact.data_offsets)
        return True

    def matches(self, stats: StreamStats | None) -> bool:
        """Whether what was read is the artifact the manifest describes: stored and plaintext
        bytes, each by size and sha256."""
        a = self.artifact
        return stats is not None and (
            stats.stored_size,
            stats.stored_sha256,
            stats.plain_size,
            stats.plain_sha256,
        ) == (a.stored_size, a.stored_sha256, a.plain_size, a.plain_sha256)

    def mismatch(self) -> IntegrityError:
        """What to say when the decrypted archive is not the one the manifest describes."""
        return IntegrityError(
            f"{self.label}: the decrypted archive is not the one the manifest describes (its"
            " sha256 differs): the stored object was replaced or damaged; run `bika verify`"
        )


def check_identity(repo: Repository, key: str, identities: list[object], label: str) -> None:
    """Fail before touching any database if none of the identities opens the artifact."""
    probe = header_probe(read_range(repo.storage, key, 0, HEADER_PROBE_SIZE))
    if probe is None:
        raise RestoreError(f"{label}: not an age file (no header found)")
    if not opens(probe, identities):
        raise IdentityError(
            f"{label}: the given identity cannot decrypt this backup; use a key it was"
            " encrypted to ('bika key check --identity FILE' tells which backups a key opens)"
        )


def read_archive_toc(
    repo: Repository, artifact: Artifact, identities: list[object], label: str
) -> ArchiveToc:
    """The TOC from the start of the stored archive, reading no further than it."""
    try:
        StoredArchive(repo, artifact, identities, label).decode(_TocSink())
    except _TocComplete as done:
        return done.toc
    raise DumpError(f"{label}: the archive ends before its table of contents does (truncated)")


class _TocComplete(Exception):
    def __init__(self, toc: ArchiveToc) -> None:
        self.toc = toc


class _TocSink:
    """Collects the archive's first bytes until its TOC parses, then stops the stream."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._next_attempt = 0

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= self._next_attempt:
            toc = read_toc(bytes(self._buf))
            if toc is not None:
                raise _TocComplete(toc)
            self._next_attempt = len(self._buf) * 3 // 2
        return len(data)


class ArchiveCopy:
    """The archive decrypted into a private temp file (in bika's scratch folder, see
    bika.scratch) by a thread of its own, so that other work (a drill starting its server)
    goes on meanwhile; path() waits for it. `matches` tells whether it is the archive the
    manifest describes (StoredArchive.save); the file is removed on exit, however it is left
    (an interrupt included)."""

    def __init__(
        self, archive: StoredArchive, temp_dir: Path | None, progress: Progress | None = None
    ) -> None:
        self.archive = archive
        self._temp_dir = temp_dir
        self._progress = progress
        self._path: Path | None = None
        self.matches = False
        self._cancelled = threading.Event()
        self._task = Background(self._save, "bika-archive-copy")

    def __enter__(self) -> ArchiveCopy:
        size = self.archive.artifact.plain_size
        folder = scratch.folder(self._temp_dir)
        free = shutil.disk_usage(folder).free
        if free < size + DISK_MARGIN:
            raise RestoreError(
                f"--jobs needs a {size >> 20} MiB temporary file but {folder.parent} has"
                f" {free >> 20} MiB free; free space, set TMPDIR (or --temp-dir) to a larger"
                " disk, or restore without --jobs"
            )
        fd, name = tempfile.mkstemp(prefix="restore-", suffix=".pgdump", dir=folder)
        os.close(fd)
        self._path = Path(name)
        try:
            self._task.start()
        except BaseException:
            self._path.unlink(missing_ok=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._cancelled.set()  # stops a copy still running (the caller gave up)
            self._task.wait(self._cancelled.set)
        finally:
            if self._path is not None:
                self._path.unlink(missing_ok=True)

    def path(self) -> Path:
        """The finished file; raises what writing it raised."""
        self._task.wait(self._cancelled.set)
        if self._task.error is not None:
            raise self._task.error
        assert self._path is not None
        return self._path

    def _save(self) -> None:
        assert self._path is not None
        with open(self._path, "r+b") as out:
            self.matches = self.archive.save(out, self._report)

    def _report(self, plain: int, stored: int) -> None:
        if self._cancelled.is_set():
            raise RestoreError("the restore was cancelled while its archive was decrypted")
        if self._progress is not None:
            self._progress(plain, stored)
