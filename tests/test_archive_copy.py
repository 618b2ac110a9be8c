"""ArchiveCopy: the decrypted copy pg_restore --jobs reads, written by a thread of its own."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import pytest

from bika import scratch
from bika.errors import IntegrityError, RestoreError
from bika.operations.stored_archive import ArchiveCopy


class _Archive:
    """Stands in for StoredArchive: writes `chunks` pieces, reporting progress after each."""

    def __init__(self, chunks: int | None, fail: Exception | None = None) -> None:
        self.artifact = SimpleNamespace(plain_size=1 << 20)
        self.chunks = chunks
        self.fail = fail
        self.written = 0

    def save(self, file: IO[bytes], progress: Any) -> bool:
        while self.chunks is None or self.written < self.chunks:
            file.write(b"x" * 1024)
            self.written += 1
            progress(self.written * 1024, 0)
            time.sleep(0.001)
        if self.fail is not None:
            raise self.fail
        return True


def _copy(archive: _Archive, folder: Path) -> ArchiveCopy:
    return ArchiveCopy(archive, folder)  # type: ignore[arg-type]


def _files_left(base: Path) -> list[Path]:
    """What is in `base` but this process's scratch folder and its owner record."""
    own = scratch.folder(base)
    return [p for p in base.rglob("*") if p not in (own, own / scratch.OWNER_FILE)]


def test_the_copy_is_there_when_path_returns_and_removed_after(tmp_path: Path) -> None:
    with _copy(_Archive(chunks=50), tmp_path) as copy:
        path = copy.path()
        assert copy.matches and path.stat().st_size == 50 * 1024
        assert path.parent == scratch.folder(tmp_path)
        assert path.parent.stat().st_mode & 0o077 == 0
    assert not path.exists()


def test_leaving_early_stops_the_copy_and_removes_the_file(tmp_path: Path) -> None:
    archive = _Archive(chunks=None)  # would write forever
    with pytest.raises(KeyboardInterrupt), _copy(archive, tmp_path):
        while archive.written < 5:
            time.sleep(0.01)
        raise KeyboardInterrupt
    assert not _files_left(tmp_path)
    assert not [t for t in threading.enumerate() if t.name == "bika-archive-copy"]


def test_what_the_copy_raised_comes_back_from_path(tmp_path: Path) -> None:
    failing = _Archive(chunks=3, fail=IntegrityError("x/database: zstd data is corrupt"))
    with _copy(failing, tmp_path) as copy, pytest.raises(IntegrityError, match="corrupt"):
        copy.path()
    assert not _files_left(tmp_path)


def test_too_little_room_is_refused_before_writing(tmp_path: Path) -> None:
    huge = _Archive(chunks=1)
    huge.artifact.plain_size = 1 << 60
    with pytest.raises(RestoreError, match="TMPDIR"), _copy(huge, tmp_path):
        pass
    assert huge.written == 0 and not _files_left(tmp_path)


def test_ctrl_c_while_waiting_for_the_copy_stops_it_before_going_on(tmp_path: Path) -> None:
    # Python 3.11's Thread.join, interrupted, takes the thread for ended: a bika that then
    # exits while the copy runs in pyrage aborts (SIGABRT, reliability review case 64)
    archive = _Archive(chunks=None)
    previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt), _copy(archive, tmp_path) as copy:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            copy.path()  # waits forever but for the interrupt
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not [t for t in threading.enumerate() if t.name == "bika-archive-copy"]
    written = archive.written
    time.sleep(0.05)
    assert archive.written == written, "the copy goes on after the restore gave up"
    assert not _files_left(tmp_path)
