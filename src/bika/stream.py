"""The streaming pipeline: plaintext → zstd → age → storage, and back.

Both directions hash what passes (plaintext and stored bytes) so an artifact's manifest entry
is known the moment its last byte is written, with no temp file and bounded memory.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pyrage
import zstandard

from bika.errors import IdentityError, IntegrityError, Terminated
from bika.storage import Sink, Source

CODECS = ["zstd", "age"]
READ_SIZE = 1 << 20

Progress = Callable[[int, int], None]
"""Called with (plaintext bytes so far, stored bytes so far)."""


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


@dataclass
class StreamStats:
    plain_size: int
    plain_sha256: str
    stored_size: int
    stored_sha256: str


class _HashingReader:
    """Reads plaintext from a source, hashing it and showing it to a tap on the way."""

    def __init__(
        self,
        source: Readable,
        tap: Callable[[bytes], None] | None,
        progress: Callable[[], None] | None,
    ) -> None:
        self._source = source
        self._tap = tap
        self._progress = progress
        self.hash = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._source.read(READ_SIZE if n is None or n < 0 else n)
            if data:
                self.hash.update(data)
                self.size += len(data)
                if self._tap is not None:
                    self._tap(data)
                if self._progress is not None:
                    self._progress()
            return data
        except BaseException as exc:
            self.error = exc
            raise


class _HashingWriter:
    """Passes bytes to a sink, hashing and counting them."""

    def __init__(self, sink: Sink, progress: Callable[[], None] | None = None) -> None:
        self._sink = sink
        self._progress = progress
        self.hash = hashlib.sha256()
        self.size = 0
        self.error: BaseException | None = None

    def write(self, data: bytes) -> int:
        try:
            self._sink.write(data)
            self.hash.update(data)
            self.size += len(data)
            if self._progress is not None:
                self._progress()
            return len(data)
        except BaseException as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        pass


def encode(
    source: Readable,
    sink: Sink,
    recipients: list[object],
    *,
    level: int = 3,
    threads: int = -1,
    tap: Callable[[bytes], None] | None = None,
    progress: Progress | None = None,
) -> StreamStats:
    """Compress and encrypt everything source yields into sink."""
    writer = _HashingWriter(sink)
    reader = _HashingReader(source, tap, None)
    if progress is not None:

        def report() -> None:
            progress(reader.size, writer.size)

        reader._progress = report
        writer._progress = report
    # with a content checksum, as the zstd CLI writes by default: decompression checks it
    compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    compressed = compressor.stream_reader(reader, read_size=READ_SIZE)  # type: ignore[arg-type]
    try:
        pyrage.encrypt_io(compressed, writer, recipients)
    except pyrage.EncryptError as exc:
        # an exception raised in our reader or writer comes back wrapped; raise the original
        cause = reader.error or writer.error
        if cause is not None:
            raise cause from None
        _raise_interrupt(exc)
        raise IntegrityError(f"age encryption failed: {exc}") from exc
    for side in (reader, writer):
        if side.error is not None:
            raise side.error
    return StreamStats(reader.size, reader.hash.hexdigest(), writer.size, writer.hash.hexdigest())


def decode(
    source: Source,
    sink: Sink,
    identities: list[object],
    *,
    name: str,
    progress: Progress | None = None,
) -> StreamStats:
    """Decrypt and decompress source into sink; name says which artifact, for messages.

    Three threads share the work: this one decrypts, one decompresses, one hashes the
    plaintext and writes it to sink (zstd and sha256 release the GIL; age does not)."""
    counting = _HashingReader(source, None, None)
    plain = _HashingWriter(sink)
    if progress is not None:

        def report() -> None:
            progress(plain.size, counting.size)

        plain._progress = report
    with _Handoff(plain) as writing:
        decompressor = zstandard.ZstdDecompressor().stream_writer(
            writing,  # type: ignore[arg-type]
            closefd=False,
            write_size=READ_SIZE,
        )
        guarded = _GuardedWriter(decompressor, name)
        # age yields 64 KiB chunks; zstd goes faster on bigger ones
        with _Handoff(guarded, gather=READ_SIZE) as decompressing:
            try:
                pyrage.decrypt_io(counting, decompressing, identities)
                decompressing.finish()
                decompressor.flush()  # type: ignore[no-untyped-call]
                writing.finish()
            except (pyrage.DecryptError, OSError) as exc:
                # pyrage reports a bad payload chunk as OSError and wraps our callbacks'
                # exceptions: raise the original
                cause = counting.error or decompressing.error or writing.error
                if cause is not None:
                    raise cause from None
                _raise_interrupt(exc)
                if "No matching keys" in str(exc):
                    raise IdentityError(
                        f"{name}: none of the given identities can decrypt it; use a key it"
                        " was encrypted to ('bika key check --identity FILE' tells which"
                        " backups a key opens)"
                    ) from exc
                raise IntegrityError(
                    f"{name}: decryption failed at stored byte ~{counting.size}: the object is"
                    " corrupted or truncated"
                ) from exc
    for error in (counting.error, decompressing.error, writing.error):
        if error is not None:
            raise error
    return StreamStats(plain.size, plain.hash.hexdigest(), counting.size, counting.hash.hexdigest())


def _raise_interrupt(exc: Exception) -> None:
    """pyrage hands back an exception raised in our callbacks as its own error, as text: an
    interrupt (Ctrl-C, or a signal handler's SystemExit) goes on as itself, never relabelled
    as a failed encryption or a damaged object."""
    text = str(exc)
    if text.startswith("Terminated"):
        raise Terminated from None
    if text.startswith("KeyboardInterrupt"):
        raise KeyboardInterrupt from None
    if text.startswith("SystemExit"):
        code = text.partition(":")[2].strip()
        raise SystemExit(int(code) if code.isdigit() else code or None) from None


class _Writer(Protocol):
    def write(self, data: bytes, /) -> int: ...


class _Handoff:
    """A writer that passes chunks to `writer` on a thread of its own, a few chunks behind,
    gathered to at least `gather` bytes; the writer's first exception comes back from the
    next write() or finish()."""

    def __init__(self, writer: _Writer, *, gather: int = 0, depth: int = 8) -> None:
        self._writer = writer
        self._gather = gather
        self._gathered: list[bytes] = []
        self._gathered_size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._run, name="bika-decode", daemon=True)
        self._abandoned = False
        self.error: BaseException | None = None

    def __enter__(self) -> _Handoff:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._thread.is_alive():
            self._abandoned = exc_type is not None  # what is still queued is dropped
            self._queue.put(None)
            self._thread.join()

    def write(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        size = len(data)
        if size:
            self._gathered.append(bytes(data))
            self._gathered_size += size
            if self._gathered_size >= self._gather:
                self._pass_on()
        return size

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        """Wait until every chunk is written; raise what the writer raised."""
        self._pass_on()
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _pass_on(self) -> None:
        if self._gathered:
            gathered = self._gathered
            self._queue.put(gathered[0] if len(gathered) == 1 else b"".join(gathered))
            self._gathered, self._gathered_size = [], 0

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self.error is None and not self._abandoned:
                try:
                    self._writer.write(data)
                except BaseException as exc:  # handed to the decoding thread
                    self.error = exc


class _GuardedWriter:
    """Turns zstd's errors on bad compressed data into an IntegrityError naming the artifact."""

    def __init__(self, writer: zstandard.ZstdDecompressionWriter, name: str) -> None:
        self._writer = writer
        self._name = name

    def write(self, data: bytes) -> int:
        try:
            self._writer.write(data)
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"{self._name}: zstd data is corrupt ({exc})") from exc
        return len(data)
