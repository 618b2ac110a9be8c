"""What users get wrong gets one line and the right exit code, and never shows a secret:
malformed URLs, private keys where public keys go, passphrase-protected identities, files
that are not what they should be."""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Callable
from pathlib import Path

import pyrage
import pytest

from bika.postgres import sample
from bika.postgres.cluster import Cluster

from helpers import KeyedRepo, assert_clean_error, run_bika

PASSWORD = "p@ss/w%rd x:y#?&=Zq7"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://app:{PASSWORD}@127.0.0.1:1/shop",  # review case 7
        "postgresql://app@@:x:/",  # review case 1
    ],
    ids=["unencoded-password", "two-ats"],
)
def test_malformed_url_is_a_usage_error_that_shows_no_password(
    keyed_repo: KeyedRepo, url: str
) -> None:
    result = run_bika("backup", "--repo", str(keyed_repo.repo), "--db", url)
    assert result.returncode == 2, result.stderr
    assert_clean_error(result, "malformed", "percent-encoded")
    debug = run_bika("backup", "--repo", str(keyed_repo.repo), "--db", url, "--debug")
    for piece in ("ss/w", "w%rd", "x:y#", "Zq7"):
        assert piece not in result.stderr + debug.stderr


def test_private_key_given_as_recipient_is_never_echoed(tmp_path: Path) -> None:
    from bika.crypto import generate_identity

    generate_identity(tmp_path / "key.txt")
    secret = next(
        line for line in (tmp_path / "key.txt").read_text().splitlines() if line.startswith("AGE")
    )
    result = run_bika(
        "init", "--repo", str(tmp_path / "r"), "--recipient", str(tmp_path / "key.txt")
    )
    assert_clean_error(result, "private key", "age-keygen -y")
    assert secret[len("AGE-SECRET-KEY-1") :][:4] not in result.stderr
    assert not (tmp_path / "r").exists()


@pytest.fixture
def backed_up(
    pg18: Cluster, new_database: Callable[[Cluster], str], keyed_repo: KeyedRepo
) -> KeyedRepo:
    url = new_database(pg18)
    sample.load(url, sample.SAVINGS_GROUP_SQL)
    keyed_repo.backup(url)
    return keyed_repo


def _armored(data: bytes) -> bytes:
    body = "\n".join(textwrap.wrap(base64.b64encode(data).decode(), 64))
    return (
        f"-----BEGIN AGE ENCRYPTED FILE-----\n{body}\n-----END AGE ENCRYPTED FILE-----\n".encode()
    )


@pytest.mark.parametrize("form", ["binary", "armored"])
def test_passphrase_protected_identity_opens_with_the_passphrase(
    backed_up: KeyedRepo, tmp_path: Path, form: str
) -> None:
    # review cases 38 (internal error) and 39 (said "not an age identity")
    locked = pyrage.passphrase.encrypt(backed_up.key.read_bytes(), "hunter2")
    key = tmp_path / "key.age"
    key.write_bytes(locked if form == "binary" else _armored(locked))
    verify = ("verify", "--repo", str(backed_up.repo), "--read-data", "--identity", str(key))

    result = run_bika(*verify, env={"BIKA_IDENTITY_PASSPHRASE": "hunter2"})
    assert result.returncode == 0, result.stderr

    assert_clean_error(run_bika(*verify), "passphrase", "BIKA_IDENTITY_PASSPHRASE")
    wrong = run_bika(*verify, env={"BIKA_IDENTITY_PASSPHRASE": "nope"})
    assert_clean_error(wrong, "wrong passphrase")


def test_identity_file_that_is_not_text_is_one_line(backed_up: KeyedRepo, tmp_path: Path) -> None:
    key = tmp_path / "key.bin"
    key.write_bytes(b"\x8c\x00\xff" * 50)
    result = run_bika("verify", "--repo", str(backed_up.repo), "--read-data", "-i", str(key))
    assert_clean_error(result, "not an age identity file")


def test_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    # review case 97
    (tmp_path / "bika.toml").write_bytes(b'repo = "/tmp/\xe9t\xe9"\n')
    result = run_bika("list", cwd=tmp_path)
    assert result.returncode == 2
    assert_clean_error(result, "bika.toml", "not UTF-8")


def test_missing_temp_dir_is_refused_before_anything_is_created(
    backed_up: KeyedRepo, pg18: Cluster, tmp_path: Path
) -> None:
    # review case 101: an internal error, after creating (and dropping) the database
    target = pg18.url("secrets_and_inputs_never_made")
    result = run_bika(
        *("restore", "latest", "--repo", str(backed_up.repo), "-i", str(backed_up.key)),
        *("--to", target, "--create", "--jobs", "2", "--temp-dir", str(tmp_path / "nope")),
    )
    assert result.returncode == 2, result.stderr
    assert_clean_error(result, "--temp-dir", "does not exist")
    assert "created by this restore" not in result.stderr
