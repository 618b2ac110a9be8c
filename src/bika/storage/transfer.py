"""Streaming to and from the cloud backends: a producer's write() calls become a multipart upload.

Shared by s3, azure and gcs so that commit, abort and create-only checks behave the same everywhere.

An upload buffers its first part. A stream that ends within it is sent as one conditional
request, which is atomic and create-only on every backend. A longer stream is handed, over a
bounded queue, to a worker thread that runs the backend's streaming upload (S3 multipart, Azure
block list, GCS resumable) while the producer goes on writing; memory stays bounded by the queue
and the backend's part buffers. A longer create-only upload checks that the key is free before
the first part and again just before the commit, because S3 and Azure multipart commits (as
obstore drives them) carry no If-None-Match: a writer that slips in between the last check and
the commit is overwritten. bika's keys are unique per backup, so the window only matters
for two writers of the same key at the same moment.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from bika.errors import BikaError, ObjectExists, StorageError

QUEUE_ITEM_SIZE = 1024 * 1024
QUEUE_ITEMS = 8
_POLL_SECONDS = 0.1

T = TypeVar("T")


class _Abort(Exception):
    """Raised into the backend's upload so that it aborts the multipart upload."""


_END = object()
_ABORT = object()


def overwrite_refused(url: str, key: str) -> ObjectExists:
    """The one message every cloud backend gives when a create-only write finds the key."""
    return ObjectExists(f"{key} already exists in {url}; bika never overwrites an object")


class Upload:
    """The Sink a cloud backend's create() yields; commit() or abort() ends it."""

    def __init__(
        self,
        *,
        part_size: int,
        put_whole: Callable[[bytes], None],
        put_stream: Callable[[Iterator[bytes]], None],
        exists: Callable[[], bool],
        refuse: Callable[[], StorageError],
        fail: Callable[[BaseException], StorageError],
        overwrite: bool,
    ) -> None:
        self._part_size = part_size
        self._put_whole = put_whole
        self._put_stream = put_stream
        self._exists = exists
        self._refuse = refuse
        self._fail = fail
        self._overwrite = overwrite
        self._buffer = bytearray()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_ITEMS)
        self._worker: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done = False

    def write(self, data: bytes) -> int:
        if self._done:
            raise StorageError("write after the upload ended")
        self._buffer += data
        if self._worker is None:
            if len(self._buffer) >= self._part_size:
                self._start()
        elif len(self._buffer) >= QUEUE_ITEM_SIZE:
            self._send(bytes(self._buffer))
            self._buffer.clear()
        return len(data)

    def flush(self) -> None:
        """pyrage calls flush(); parts are sent as they fill, the object appears at commit."""

    @contextmanager
    def writing(self) -> Iterator[Upload]:
        """Yield this upload to the producer; commit when it finishes, abort if it raises."""
        try:
            yield self
        except BaseException:
            self.abort()
            raise
        self.commit()

    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        if self._worker is None:
            data = bytes(self._buffer)
            self._buffer.clear()
            self._call(self._put_whole, data)
            return
        try:
            if self._buffer:
                self._send(bytes(self._buffer))
                self._buffer.clear()
            if not self._overwrite and self._call(self._exists):
                raise self._refuse()
        except BaseException:
            self._stop(_ABORT)
            raise
        self._stop(_END)
        if self._error is not None:
            raise self._as_storage_error(self._error)

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        self._buffer.clear()
        if self._worker is not None:
            self._stop(_ABORT)

    def _start(self) -> None:
        if not self._overwrite and self._call(self._exists):
            raise self._refuse()
        self._worker = threading.Thread(target=self._run, name="bika-upload", daemon=True)
        self._worker.start()
        first = bytes(self._buffer)
        self._buffer.clear()
        self._send(first)

    def _run(self) -> None:
        try:
            self._put_stream(self._chunks())
        except BaseException as exc:  # reported to the producer by _send / commit
            self._error = exc

    def _chunks(self) -> Iterator[bytes]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                raise _Abort()
            assert isinstance(item, bytes)
            yield item

    def _send(self, item: object) -> None:
        """Queue an item; fail fast with the worker's error once the upload has failed."""
        worker = self._worker
        assert worker is not None
        while True:
            if self._error is not None or not worker.is_alive():
                error = self._error or StorageError("the upload stopped unexpectedly")
                raise self._as_storage_error(error)
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _stop(self, marker: object) -> None:
        worker = self._worker
        assert worker is not None
        while worker.is_alive():
            try:
                self._queue.put(marker, timeout=_POLL_SECONDS)
                break
            except queue.Full:
                continue
        worker.join()

    def _call(self, func: Callable[..., T], *args: object) -> T:
        try:
            return func(*args)
        except BaseException as exc:
            raise self._as_storage_error(exc) from exc

    def _as_storage_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, BikaError | KeyboardInterrupt | _Abort):
            return exc
        return self._fail(exc)


class RangedReader:
    """A Source that reads an object in ranges of chunk_size, fetching the next range while the
    caller consumes the current one. Each range is its own request, retried on its own, so a
    long restore survives a dropped connection and no request outlives its timeout."""

    def __init__(
        self, fetch: Callable[[int, int], bytes], end: int, chunk_size: int, start: int = 0
    ) -> None:
        """Bytes start..end (exclusive) of the object, fetch(start, length) at a time."""
        self._fetch = fetch
        self._size = end
        self._chunk_size = chunk_size
        self._next_offset = start
        self._current = memoryview(b"")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bika-read")
        self._pending: Future[bytes] | None = self._schedule()

    def _schedule(self) -> Future[bytes] | None:
        if self._next_offset >= self._size:
            return None
        start = self._next_offset
        length = min(self._chunk_size, self._size - start)
        self._next_offset += length
        return self._pool.submit(self._fetch, start, length)

    def _advance(self) -> bool:
        if self._pending is None:
            return False
        data = self._pending.result()
        self._pending = self._schedule()
        self._current = memoryview(data)
        return True

    def read(self, n: int = -1) -> bytes:
        """Up to n bytes (all that is left when n < 0); fewer only at the end."""
        parts: list[bytes] = []
        wanted = self._size if n is None or n < 0 else n
        while wanted > 0:
            if not self._current and not self._advance():
                break
            piece = bytes(self._current[:wanted])
            self._current = self._current[len(piece) :]
            parts.append(piece)
            wanted -= len(piece)
        return b"".join(parts)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._pool.shutdown(wait=True, cancel_futures=True)
