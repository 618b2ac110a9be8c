"""One storage conformance suite, run against local disk, S3, Azure Blob and GCS alike.

What a backend must do for bika's repository to trust it; objects stay small for moto's sake.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta

import pytest

from bika.errors import ObjectExists, ObjectNotFound
from bika.storage import Storage, read_bytes, read_range, write_bytes

MiB = 1024 * 1024


def payload(size: int, seed: int = 0) -> bytes:
    """Incompressible but reproducible bytes."""
    blocks: list[bytes] = []
    total = 0
    while total < size:
        blocks.append(hashlib.sha256(f"{seed}:{len(blocks)}".encode()).digest() * 64)
        total += len(blocks[-1])
    return b"".join(blocks)[:size]


def stream_into(storage: Storage, key: str, data: bytes, write_size: int = 64 * 1024) -> None:
    with storage.create(key) as sink:
        for start in range(0, len(data), write_size):
            sink.write(data[start : start + write_size])


def test_streamed_put_then_streamed_get_returns_the_same_bytes(storage: Storage) -> None:
    data = payload(3 * MiB + 12345)
    stream_into(storage, "backups/one/database.pgdump.zst.age", data)

    read = bytearray()
    with storage.open("backups/one/database.pgdump.zst.age") as source:
        while chunk := source.read(100_000):
            read += chunk
    assert bytes(read) == data
    info = storage.stat("backups/one/database.pgdump.zst.age")
    assert info is not None and info.size == len(data)


def test_ranged_get_returns_the_requested_bytes(storage: Storage) -> None:
    data = payload(MiB + 7)
    stream_into(storage, "blob", data)

    assert read_range(storage, "blob", 0, 10) == data[:10]
    assert read_range(storage, "blob", 500_000, 70_000) == data[500_000:570_000]
    assert read_range(storage, "blob", len(data) - 5, 100) == data[-5:]
    assert read_range(storage, "blob", len(data), 10) == b""


def test_a_streamed_range_longer_than_a_part_reads_only_that_range(storage: Storage) -> None:
    data = payload(MiB + 7)
    stream_into(storage, "blob", data)

    with storage.open("blob", 100_001, 600_000) as source:  # parts are 256 KiB here
        read = b"".join(iter(lambda: source.read(70_000), b""))
    assert read == data[100_001:700_001]
    with storage.open("blob", 1_000_000) as source:
        assert source.read() == data[1_000_000:]
    with storage.open("blob", len(data) - 3, 2 * MiB) as source:
        assert source.read() == data[-3:]


def test_list_gives_keys_under_a_prefix_in_key_order(storage: Storage) -> None:
    for key in ["backups/b/manifest.json", "backups/a/x", "backups/a/manifest.json", "bika.json"]:
        write_bytes(storage, key, key.encode())
    write_bytes(storage, "backupsX/other", b"not under backups/")
    write_bytes(storage, "events/e1.json", b"{}")

    listed = list(storage.list("backups/"))
    assert [info.key for info in listed] == [
        "backups/a/manifest.json",
        "backups/a/x",
        "backups/b/manifest.json",
    ]
    assert [info.size for info in listed] == [len(info.key) for info in listed]
    assert [info.key for info in storage.list("backups/a/m")] == ["backups/a/manifest.json"]
    assert [info.key for info in storage.list("back")] == [
        "backups/a/manifest.json",
        "backups/a/x",
        "backups/b/manifest.json",
        "backupsX/other",
    ]
    everything = [info.key for info in storage.list()]
    assert everything == sorted(everything) and len(everything) == 6


def test_list_after_a_key_skips_the_keys_up_to_it(storage: Storage) -> None:
    for key in ["events/20261101T01.json", "events/20261102T01.json", "events/20261103T01.json"]:
        write_bytes(storage, key, b"{}")
    write_bytes(storage, "eventsX/20261109T01.json", b"{}")
    after = [info.key for info in storage.list("events/", start_after="events/20261102")]
    assert after == ["events/20261102T01.json", "events/20261103T01.json"]
    assert [i.key for i in storage.list("events/", start_after="events/20261102T01.json")] == [
        "events/20261103T01.json"
    ]


def test_folders_are_the_names_right_under_a_prefix(storage: Storage) -> None:
    for key in ["backups/b/manifest.json", "backups/a/x", "backups/a/y/z", "backups/c"]:
        write_bytes(storage, key, b"1")
    write_bytes(storage, "backupsX/d/other", b"not under backups/")
    assert list(storage.folders("backups/")) == ["a", "b"]
    assert list(storage.folders("backups/a/")) == ["y"]
    assert list(storage.folders("nothing/")) == []
    storage.delete("backups/b/manifest.json")
    assert list(storage.folders("backups/")) == ["a"], "a folder emptied is no folder"


def test_list_gives_the_tag_of_each_version_where_the_backend_has_one(storage: Storage) -> None:
    write_bytes(storage, "a", b"one")
    (first,) = storage.list("a")
    write_bytes(storage, "a", b"two", overwrite=True)
    (second,) = storage.list("a")
    if first.etag is not None:  # local disk has none: size and time tell versions apart
        assert second.etag is not None and first.etag != second.etag


def test_delete_removes_an_object_and_ignores_a_missing_one(storage: Storage) -> None:
    write_bytes(storage, "drills/1.json", b"{}")
    storage.delete("drills/1.json")
    assert storage.stat("drills/1.json") is None
    assert list(storage.list("drills/")) == []
    storage.delete("drills/1.json")
    storage.delete("never/was/there")


def test_stat_gives_the_size_or_none(storage: Storage) -> None:
    write_bytes(storage, "empty", b"")
    write_bytes(storage, "small", b"12345")
    small = storage.stat("small")
    empty = storage.stat("empty")
    assert small is not None and (small.key, small.size) == ("small", 5)
    assert empty is not None and empty.size == 0
    assert read_bytes(storage, "empty") == b""
    assert storage.stat("absent") is None


def test_create_only_put_refuses_to_overwrite(storage: Storage) -> None:
    write_bytes(storage, "bika.json", b"first")
    with pytest.raises(ObjectExists):
        write_bytes(storage, "bika.json", b"second")
    assert read_bytes(storage, "bika.json") == b"first"

    big = payload(MiB + 1, seed=1)
    stream_into(storage, "big", big)
    with pytest.raises(ObjectExists):
        stream_into(storage, "big", payload(MiB + 1, seed=2))
    assert read_bytes(storage, "big") == big

    write_bytes(storage, "bika.json", b"third", overwrite=True)
    assert read_bytes(storage, "bika.json") == b"third"


def test_failed_streamed_put_leaves_nothing_visible(storage: Storage) -> None:
    class ProducerFailed(Exception):
        pass

    for size in (1000, 2 * MiB):  # within the first part, and past it (multipart)
        key = f"backups/failed-{size}/database.pgdump.zst.age"
        with pytest.raises(ProducerFailed), storage.create(key) as sink:
            sink.write(payload(size))
            raise ProducerFailed()
        assert storage.stat(key) is None
        assert list(storage.list("backups/")) == []


def test_write_bytes_and_read_bytes(storage: Storage) -> None:
    data = os.urandom(70_000)
    write_bytes(storage, "events/20261124T020003Z-host-1a2b.json", data)
    assert read_bytes(storage, "events/20261124T020003Z-host-1a2b.json") == data


def test_missing_object_raises_object_not_found(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        read_bytes(storage, "backups/nope/manifest.json")
    with pytest.raises(ObjectNotFound), storage.open("backups/nope/manifest.json"):
        pass
    with pytest.raises(ObjectNotFound):
        read_range(storage, "backups/nope/manifest.json", 0, 10)


def test_list_and_stat_say_when_an_object_was_written(storage: Storage) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)  # emulators' clocks round to the second
    write_bytes(storage, "backups/a/manifest.json", b"{}")
    (listed,) = storage.list("backups/")
    stat = storage.stat("backups/a/manifest.json")
    for info in (listed, stat):
        assert info is not None and info.modified is not None
        assert before < info.modified < datetime.now(UTC) + timedelta(minutes=5)


def test_leftovers_are_only_what_interrupted_writes_left(storage: Storage) -> None:
    write_bytes(storage, "backups/a/manifest.json", b"{}")
    with pytest.raises(RuntimeError), storage.create("backups/b/database") as sink:
        sink.write(b"partial")
        raise RuntimeError("killed")
    # a failed write cleans up after itself: what is left is at most its empty folder
    assert [i.key for i in storage.leftovers()] in ([], ["backups/b/"])
    for info in storage.leftovers():
        storage.delete(info.key)
    assert list(storage.leftovers()) == []
    assert [i.key for i in storage.list()] == ["backups/a/manifest.json"]
