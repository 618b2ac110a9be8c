"""Redaction: a full run (init, backup, verify --read-data, drill, restore, check, doctor, audit,
a failed backup), with --debug and --log-file, a recognisable password in the URL and in
PGPASSWORD, and real key files; then every output, log, event, manifest and plaintext object
of the repository is searched for the password and the private keys.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import psycopg
import zstandard

from bika.crypto import generate_identity
from bika.postgres import sample
from bika.postgres.cluster import Cluster
from bika.signing import generate_signing_key

from helpers import run_bika

PASSWORD = "Redact-Me-9q7/Zx%42"  # a slash and a percent: its URL-encoded form differs
WRONG_PASSWORD = "Wrong-Redact-4Kp8"
ROLE = "redaction_admin"


def _secrets(path: Path, prefix: str) -> list[str]:
    """The private key line of a key file, and its part after the prefix."""
    line = next(x for x in path.read_text().splitlines() if x.startswith(prefix))
    return [line, line[len(prefix) :], line[len(prefix) : len(prefix) + 20]]


def test_no_password_or_private_key_in_anything_a_full_run_writes(
    pg18: Cluster, new_database: Callable[[Cluster], str], tmp_path: Path
) -> None:
    source = new_database(pg18)
    with psycopg.connect(source, autocommit=True) as db:
        db.execute(f"DROP ROLE IF EXISTS {ROLE}")
        db.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
    sample.load(source, sample.SAVINGS_GROUP_SQL)
    name = source.rsplit("/", 1)[1]
    url = pg18.url(name, user=ROLE, password=PASSWORD)
    target = pg18.url(new_database(pg18).rsplit("/", 1)[1], user=ROLE, password=PASSWORD)
    no_password = pg18.url(name, user=ROLE, password=None)
    wrong = pg18.url(name, user=ROLE, password=WRONG_PASSWORD)

    identity = tmp_path / "age.key"
    recipient = generate_identity(identity)
    signing_key = tmp_path / "signing.key"
    public = generate_signing_key(signing_key)
    repo = tmp_path / "repo"
    log = tmp_path / "bika.log"
    state = tmp_path / "state"
    env = {
        "BIKA_REPO": str(repo),
        "BIKA_SIGNING_KEY": str(signing_key),
        "BIKA_TRUSTED_SIGNERS": public,
        "BIKA_IDENTITY": str(identity),
        "XDG_STATE_HOME": str(state),
    }
    common = ("--debug", "--log-file", str(log))
    runs: list[subprocess.CompletedProcess[str]] = []

    def bika(*args: str, ok: bool | None = True, **extra: str) -> subprocess.CompletedProcess[str]:
        result = run_bika(*args, *common, env={**env, **extra})
        assert ok is None or (result.returncode == 0) == ok, result.stderr
        assert "Traceback" not in result.stderr or not ok, result.stderr
        runs.append(result)
        return result

    bika("init", "--recipient", recipient)
    bika("backup", "--db", url, "--label", "redaction")
    bika("backup", "--db", no_password, PGPASSWORD=PASSWORD)
    bika("verify", "--read-data")
    bika("drill", "latest")
    bika("restore", "latest", "--to", target)
    bika("check", ok=None, BIKA_DATABASE_URL=url)  # its findings do not matter here
    bika("doctor", "--db", url, ok=None)
    bika("doctor", "--db", no_password, "--json", ok=None, PGPASSWORD=PASSWORD)
    bika("config", "show", BIKA_DATABASE_URL=url)
    bika("backup", "--db", wrong, ok=False)  # authentication fails: the error names no password
    bika("backup", "--db", no_password, ok=False, PGPASSWORD=WRONG_PASSWORD)
    bika("list", "--json")
    bika("audit", "list", "--json")
    bika("audit", "verify")

    forbidden = {
        PASSWORD,
        quote(PASSWORD, safe=""),
        WRONG_PASSWORD,
        *_secrets(identity, "AGE-SECRET-KEY-"),
        *_secrets(signing_key, "BIKA-SIGNING-KEY-"),
    }
    places: dict[str, str] = {}
    for n, result in enumerate(runs):
        places[f"run {n} {result.args[3:5]} stdout"] = result.stdout
        places[f"run {n} {result.args[3:5]} stderr"] = result.stderr
    places[str(log)] = log.read_text()
    written = [p for p in [*repo.rglob("*"), *state.rglob("*")] if p.is_file()]
    for path in written:
        if path.name.endswith(".age"):  # artifacts are age ciphertext
            continue
        data = path.read_bytes()
        if "/index/" in str(path):  # copies of manifests, drill records and events, in zstd
            data = zstandard.ZstdDecompressor().decompress(data)
        places[str(path)] = data.decode("utf-8", errors="replace")
    assert any("manifest.json" in p for p in places)
    assert any("/events/" in p for p in places)
    assert any("/drills/" in p for p in places)
    assert any("/index/" in p for p in places)
    assert "password authentication failed" in places[f"run 10 {runs[10].args[3:5]} stderr"]
    leaks = [(where, s) for where, text in places.items() for s in forbidden if s in text]
    assert leaks == [], leaks
