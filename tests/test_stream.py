"""The zstd + age stream on its own: round trip, hashes, and what breaks it."""

from __future__ import annotations

import hashlib
import io
import os
import random
import signal
import threading

import pyrage
import pytest
import zstandard

from bika.errors import IdentityError, IntegrityError, StorageError
from bika.stream import decode, encode


class Sink:
    def __init__(self, fail_after: int | None = None) -> None:
        self.buffer = io.BytesIO()
        self.fail_after = fail_after

    def write(self, data: bytes) -> int:
        if self.fail_after is not None and self.buffer.tell() + len(data) > self.fail_after:
            raise StorageError("storage went away")
        return self.buffer.write(data)


@pytest.fixture
def identity() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


PLAIN = os.urandom(300_000) + b"ibimina " * 400_000


def _encoded(identity: pyrage.x25519.Identity) -> bytes:
    sink = Sink()
    encode(io.BytesIO(PLAIN), sink, [identity.to_public()])
    return sink.buffer.getvalue()


def test_round_trip_with_both_hashes(identity: pyrage.x25519.Identity) -> None:
    sink = Sink()
    fed: list[int] = []
    stats = encode(
        io.BytesIO(PLAIN), sink, [identity.to_public()], tap=lambda b: fed.append(len(b))
    )
    stored = sink.buffer.getvalue()
    assert stored.startswith(b"age-encryption.org/v1\n")
    assert sum(fed) == len(PLAIN) == stats.plain_size
    assert stats.plain_sha256 == hashlib.sha256(PLAIN).hexdigest()
    assert stats.stored_sha256 == hashlib.sha256(stored).hexdigest()
    assert stats.stored_size == len(stored) < len(PLAIN)
    out = Sink()
    back = decode(io.BytesIO(stored), out, [identity], name="x")
    assert out.buffer.getvalue() == PLAIN
    assert (back.plain_sha256, back.stored_sha256) == (stats.plain_sha256, stats.stored_sha256)


def test_several_recipients_each_decrypt(identity: pyrage.x25519.Identity) -> None:
    other = pyrage.x25519.Identity.generate()
    sink = Sink()
    encode(io.BytesIO(b"data" * 1000), sink, [identity.to_public(), other.to_public()])
    for key in (identity, other):
        out = Sink()
        decode(io.BytesIO(sink.buffer.getvalue()), out, [key], name="x")
        assert out.buffer.getvalue() == b"data" * 1000


def test_wrong_key_is_an_identity_error(identity: pyrage.x25519.Identity) -> None:
    with pytest.raises(IdentityError, match="x: none of the given identities"):
        decode(
            io.BytesIO(_encoded(identity)), Sink(), [pyrage.x25519.Identity.generate()], name="x"
        )


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_ciphertext_is_an_integrity_error(
    identity: pyrage.x25519.Identity, damage: str
) -> None:
    data = bytearray(_encoded(identity))
    if damage == "flip":
        data[len(data) // 2] ^= 0x40
    else:
        del data[len(data) - 100 :]
    with pytest.raises(IntegrityError, match="corrupted or truncated"):
        decode(io.BytesIO(bytes(data)), Sink(), [identity], name="x")


def test_sink_errors_surface_unchanged(identity: pyrage.x25519.Identity) -> None:
    with pytest.raises(StorageError, match="storage went away"):
        encode(io.BytesIO(PLAIN), Sink(fail_after=10_000), [identity.to_public()])


def test_source_errors_surface_unchanged(identity: pyrage.x25519.Identity) -> None:
    class Broken:
        def read(self, n: int = -1) -> bytes:
            raise StorageError("read failed")

    with pytest.raises(StorageError, match="read failed"):
        encode(Broken(), Sink(), [identity.to_public()])


def _decode_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bika-decode"]


def test_decode_sink_errors_surface_unchanged_and_stop_reading(
    identity: pyrage.x25519.Identity,
) -> None:
    sink = Sink()
    encode(io.BytesIO(os.urandom(8 << 20)), sink, [identity.to_public()])
    stored = sink.buffer.getvalue()
    source = io.BytesIO(stored)
    with pytest.raises(StorageError, match="storage went away"):
        decode(source, Sink(fail_after=100_000), [identity], name="x")
    assert source.tell() < len(stored)  # gave up early, not after reading everything
    assert not _decode_threads()


def test_corrupt_zstd_inside_valid_age_is_an_integrity_error(
    identity: pyrage.x25519.Identity,
) -> None:
    compressed = bytearray(zstandard.ZstdCompressor().compress(PLAIN))
    compressed[4:12] = b"\xff" * 8  # the frame header
    encrypted = pyrage.encrypt(bytes(compressed), [identity.to_public()])
    with pytest.raises(IntegrityError, match="x: zstd data is corrupt"):
        decode(io.BytesIO(encrypted), Sink(), [identity], name="x")
    assert not _decode_threads()


def test_damage_inside_the_compressed_data_is_caught_by_its_checksum(
    identity: pyrage.x25519.Identity,
) -> None:
    """Bytes changed inside a stored (incompressible) zstd block decompress without error
    unless the frame carries its checksum: encode writes it, decode checks it."""
    plain = os.urandom(1 << 20)
    sink = Sink()
    encode(io.BytesIO(plain), sink, [identity.to_public()])
    compressed = bytearray(pyrage.decrypt(sink.buffer.getvalue(), [identity]))
    assert zstandard.get_frame_parameters(bytes(compressed)).has_checksum
    compressed[len(compressed) // 2] ^= 0x01
    damaged = pyrage.encrypt(bytes(compressed), [identity.to_public()])
    with pytest.raises(IntegrityError, match="x: zstd data is corrupt"):
        decode(io.BytesIO(damaged), Sink(), [identity], name="x")


def test_ctrl_c_while_encrypting_is_an_interrupt_never_an_encryption_failure(
    identity: pyrage.x25519.Identity,
) -> None:
    # pyrage hands a KeyboardInterrupt raised in its reader back as its own EncryptError;
    # reliability review case 57 saw it reported as "age encryption failed: KeyboardInterrupt"
    chunk = os.urandom(1 << 20)

    class Endless:
        def read(self, n: int = -1) -> bytes:
            return chunk

    class Discard:
        def write(self, data: bytes) -> int:
            return len(data)

    previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        for _ in range(12):
            signal.setitimer(signal.ITIMER_REAL, random.uniform(0.02, 0.2))
            with pytest.raises(KeyboardInterrupt):
                encode(Endless(), Discard(), [identity.to_public()], level=1, threads=0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
