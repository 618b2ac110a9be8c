"""The look-ahead's notes in pg_wal/bika_archive_status/: "this file is stored", one per WAL
file, left only once it is durably stored and consumed when PostgreSQL asks for that file (as
WAL-G's walg_archive_status). Reading one imports nothing else of the push path.

A note names the repository and the object, and the file as it was pushed (inode, size,
mtime): a note for another repository, or for a file since rewritten under that name (a
restored data directory's), is removed and not believed.
"""

from __future__ import annotations

import _thread
import os

from bika.wal import names

ACK_FOLDER = "bika_archive_status"
_FORMAT = "bika-wal-note 1"


def folder(path: str) -> str:
    """pg_wal/bika_archive_status for pg_wal/<name>."""
    return os.path.join(os.path.dirname(path), ACK_FOLDER)


def is_noted(path: str) -> bool:
    return os.path.exists(os.path.join(folder(path), os.path.basename(path)))


def take(path: str, url: str) -> str | None:
    """The stored object's key if a note says `path` is stored in `url`; the note is consumed
    either way."""
    note = os.path.join(folder(path), os.path.basename(path))
    try:
        with open(note, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    os.unlink(note)
    if len(lines) != 4 or lines[0] != _FORMAT or lines[1] != url:
        return None
    parsed = names.parse_object(lines[2])
    if parsed is None or parsed[0] != os.path.basename(path) or lines[3] != _identity(path):
        return None
    return lines[2]


def leave(path: str, url: str, key: str) -> None:
    """Note that `path` is stored in `url` as `key` (call only once it durably is)."""
    os.makedirs(folder(path), exist_ok=True)
    text = f"{_FORMAT}\n{url}\n{key}\n{_identity(path)}\n"
    write_small(os.path.join(folder(path), os.path.basename(path)), text)


def write_small(path: str, text: str) -> None:
    """Whole or not at all (a torn note or cache is ignored: its format line or length is
    wrong), not fsynced: losing one only costs a push that reads the repository again."""
    tmp = os.path.join(
        os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.{_thread.get_ident()}"
    )
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def _identity(path: str) -> str:
    """Which file this is: a rewritten file of the same name differs."""
    st = os.stat(path)
    return f"{st.st_ino} {st.st_size} {st.st_mtime_ns}"
