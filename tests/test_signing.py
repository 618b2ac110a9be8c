"""Signed manifests: a backup edited by hand, or substituted with a consistent manifest signed by
another key, is refused by plain verify, restore and drill on a host that pins the backup
host's signing key; unsigned backups only with --trust-unsigned.
"""

from __future__ import annotations

import json
import shutil
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bika.crypto import generate_identity
from bika.diagnosis import signing_check
from bika.errors import KeySettingError
from bika.postgres.cluster import Cluster
from bika.repository.signatures import Trust, judge, signature_object
from bika.signing import generate_signing_key, load_signing_key, parse_public

from helpers import assert_clean_error, run_bika

# --- keys and signatures, no servers ---------------------------------------------------------


def test_generate_signing_key_writes_a_private_file_and_prints_the_public_key(
    tmp_path: Path,
) -> None:
    out = tmp_path / "signing.key"
    result = run_bika("key", "generate", "--signing", "--out", str(out))
    assert result.returncode == 0, result.stderr
    public = result.stdout.strip()
    assert public.startswith("ed25519:") and len(public) == len("ed25519:") + 43
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert load_signing_key(out).public == public
    secret = next(line for line in out.read_text().splitlines() if line.startswith("BIKA-"))
    assert secret not in result.stdout + result.stderr
    again = run_bika("key", "generate", "--signing", "--out", str(out))
    assert_clean_error(again, "already exists")


def test_a_private_key_given_as_trusted_signer_is_refused_without_echoing_it(
    tmp_path: Path,
) -> None:
    out = tmp_path / "signing.key"
    generate_signing_key(out)
    secret = next(line for line in out.read_text().splitlines() if line.startswith("BIKA-"))
    with pytest.raises(KeySettingError) as caught:
        parse_public(secret)
    assert secret[17:] not in str(caught.value)
    result = run_bika("list", "--repo", str(tmp_path), env={"BIKA_TRUSTED_SIGNERS": secret})
    assert_clean_error(result, "trusted_signers")
    assert result.returncode == 2
    assert secret[17:] not in result.stderr


def test_a_missing_signing_key_fails_the_backup_before_it_starts(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    recipient = generate_identity(tmp_path / "age.key")
    assert run_bika("init", "--repo", str(repo), "--recipient", recipient).returncode == 0
    missing = tmp_path / "nope.key"
    result = run_bika(
        "backup",
        "--repo",
        str(repo),
        "--db",
        "postgresql://app@127.0.0.1:9/app",
        env={"BIKA_SIGNING_KEY": str(missing)},
    )
    assert_clean_error(result, f"signing key file {missing} does not exist")
    assert result.returncode == 2
    assert not (repo / "backups").exists()


def test_signature_verdicts(tmp_path: Path) -> None:
    ours = load_signing_key(Path(_key(tmp_path, "ours")))
    theirs = load_signing_key(Path(_key(tmp_path, "theirs")))
    key, data = "backups/x/manifest.json", b'{"rows": 3}\n'
    sig = signature_object(ours, key, data)
    accepted = frozenset({ours.public})
    assert judge(key, data, sig, accepted).status == "signed"
    assert judge(key, b'{"rows": 4}\n', sig, accepted).status == "invalid"
    assert judge("backups/y/manifest.json", data, sig, accepted).status == "invalid"
    assert judge(key, data, signature_object(theirs, key, data), accepted).status == "untrusted"
    assert judge(key, data, None, accepted).status == "unsigned"
    assert judge(key, data, b"not json", accepted).status == "invalid"
    pinned = Trust(pinned=accepted)
    lenient = Trust(pinned=accepted, trust_unsigned=True)
    unpinned = Trust()
    unsigned = judge(key, data, None, accepted)
    untrusted = judge(key, data, signature_object(theirs, key, data), accepted)
    assert not pinned.accepts(unsigned, signers_known=True)
    assert lenient.accepts(unsigned, signers_known=True)
    assert not lenient.accepts(untrusted, signers_known=True)
    assert unpinned.accepts(unsigned, signers_known=True)  # bika.json's signers: not a pin
    assert not unpinned.accepts(untrusted, signers_known=True)
    assert unpinned.accepts(untrusted, signers_known=False)  # a repository from before signing
    assert not lenient.accepts(judge(key, b"x", sig, accepted), signers_known=False)


def test_a_signature_over_a_rewrite_covers_the_old_and_the_new_bytes_only(tmp_path: Path) -> None:
    """What rekey writes before it replaces a manifest: whichever of the two is stored when
    the run stops verifies; anything else does not."""
    ours = load_signing_key(Path(_key(tmp_path, "ours")))
    key, old, new = "backups/x/manifest.json", b'{"key": "a"}\n', b'{"key": "b"}\n'
    both = signature_object(ours, key, new, previous=old)
    accepted = frozenset({ours.public})
    assert judge(key, old, both, accepted).status == "signed"
    assert judge(key, new, both, accepted).status == "signed"
    assert judge(key, b'{"key": "c"}\n', both, accepted).status == "invalid"
    assert judge("backups/y/manifest.json", old, both, accepted).status == "invalid"


def _key(folder: Path, name: str) -> str:
    path = folder / f"{name}.key"
    generate_signing_key(path)
    return str(path)


# --- against a real server -------------------------------------------------------------------


@dataclass
class Signed:
    folder: Path
    repo: Path
    identity: Path
    public: str
    attacker_key: Path
    db: str
    signed_id: str
    other_id: str
    unsigned_id: str

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "BIKA_REPO": str(self.repo),
            "BIKA_IDENTITY": str(self.identity),
            "BIKA_TRUSTED_SIGNERS": self.public,
            **extra,
        }

    def copy(self, name: str) -> Path:
        copy = self.folder / f"{name}-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.repo, copy)
        for path in copy.rglob("*"):
            if path.is_file():
                path.chmod(0o600)
        return copy


@pytest.fixture(scope="module")
def signed(pg18: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signed]:
    folder = tmp_path_factory.mktemp("signed")
    url = pg18.create_database(f"signed_{uuid.uuid4().hex[:8]}")
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE members (id int PRIMARY KEY, name text)")
        db.execute("INSERT INTO members SELECT g, 'member ' || g FROM generate_series(1, 50) g")
    identity = folder / "age.key"
    recipient = generate_identity(identity)
    repo = folder / "repo"
    assert run_bika("init", "--repo", str(repo), "--recipient", recipient).returncode == 0
    # a backup from before signing was set up
    unsigned = run_bika("backup", "--repo", str(repo), "--db", url)
    assert unsigned.returncode == 0, unsigned.stderr
    signing_key = folder / "signing.key"
    public = generate_signing_key(signing_key)
    env = {"BIKA_SIGNING_KEY": str(signing_key)}
    first = run_bika("backup", "--repo", str(repo), "--db", url, env=env)
    assert first.returncode == 0, first.stderr
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("UPDATE members SET name = 'changed' WHERE id <= 10")
    second = run_bika("backup", "--repo", str(repo), "--db", url, env=env)
    assert second.returncode == 0, second.stderr
    attacker = folder / "attacker.key"
    generate_signing_key(attacker)
    yield Signed(
        folder,
        repo,
        identity,
        public,
        attacker,
        url,
        first.stdout.split()[-1],
        second.stdout.split()[-1],
        unsigned.stdout.split()[-1],
    )
    pg18.drop_database(url.rsplit("/", 1)[1])


def _manifest(repo: Path, backup_id: str) -> Path:
    return repo / "backups" / backup_id / "manifest.json"


def test_the_backup_host_signs_and_bika_json_names_its_key(signed: Signed) -> None:
    config = json.loads((signed.repo / "bika.json").read_text())
    assert config["signers"] == [signed.public]
    sig = json.loads(_manifest(signed.repo, signed.signed_id).with_suffix(".json.sig").read_text())
    assert sig["signer"] == signed.public
    assert sig["key"] == f"backups/{signed.signed_id}/manifest.json"
    assert not _manifest(signed.repo, signed.unsigned_id).with_suffix(".json.sig").exists()
    result = run_bika("verify", signed.signed_id, env=signed.env())
    assert result.returncode == 0, result.stderr


def _refused_everywhere(signed: Signed, repo: Path, backup_id: str, *fragments: str) -> None:
    env = signed.env(BIKA_REPO=str(repo))
    verify = run_bika("verify", backup_id, env=env)
    assert verify.returncode == 1, verify.stderr
    assert all(f in verify.stderr for f in fragments), verify.stderr
    assert "Traceback" not in verify.stderr
    restore = run_bika("restore", backup_id, "--to-file", str(signed.folder / "x.sql"), env=env)
    assert_clean_error(restore, *fragments)
    assert not (signed.folder / "x.sql").exists()
    drill = run_bika("drill", backup_id, env=env)
    assert_clean_error(drill, *fragments)


def test_a_row_count_edited_by_hand_is_refused(signed: Signed) -> None:
    repo = signed.copy("rows")
    path = _manifest(repo, signed.signed_id)
    manifest = json.loads(path.read_text())
    manifest["tables"][0]["rows"] += 1
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    _refused_everywhere(signed, repo, signed.signed_id, "does not match its signature")


def test_an_artifact_hash_edited_by_hand_is_refused(signed: Signed) -> None:
    repo = signed.copy("hash")
    path = _manifest(repo, signed.signed_id)
    path.write_text(path.read_text().replace('"stored_sha256": "', '"stored_sha256": "0', 1))
    _refused_everywhere(signed, repo, signed.signed_id, "does not match its signature")


def test_a_substituted_artifact_with_a_consistent_manifest_signed_by_another_key_is_refused(
    signed: Signed,
) -> None:
    """Someone with write access to the bucket puts another dump (here: the other backup's)
    under the backup's name, writes a manifest that matches it, and signs it with their key."""
    repo = signed.copy("swap")
    folder = repo / "backups" / signed.signed_id
    other = repo / "backups" / signed.other_id
    shutil.copyfile(other / "database.pgdump.zst.age", folder / "database.pgdump.zst.age")
    shutil.copyfile(other / "globals.sql.zst.age", folder / "globals.sql.zst.age")
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["id"] = signed.signed_id
    for artifact in manifest["artifacts"].values():
        artifact["key"] = artifact["key"].replace(signed.other_id, signed.signed_id)
    data = (json.dumps(manifest, indent=2) + "\n").encode()
    key = f"backups/{signed.signed_id}/manifest.json"
    attacker = load_signing_key(signed.attacker_key)
    (folder / "manifest.json").write_bytes(data)
    (folder / "manifest.json.sig").write_bytes(signature_object(attacker, key, data))
    _refused_everywhere(signed, repo, signed.signed_id, "a key this host does not trust")
    # without the pin the hashes alone cannot tell: the manifest matches its artifact
    unpinned = run_bika("verify", signed.signed_id, "--repo", str(repo))
    assert unpinned.returncode == 1, unpinned.stderr  # bika.json's signer still catches it
    config = json.loads((repo / "bika.json").read_text())
    config["signers"] = [attacker.public]  # …unless bika.json is rewritten too: hence the pin
    (repo / "bika.json").write_text(json.dumps(config))
    assert run_bika("verify", signed.signed_id, "--repo", str(repo)).returncode == 0
    _refused_everywhere(signed, repo, signed.signed_id, "a key this host does not trust")


def test_an_unsigned_backup_is_refused_unless_trusted_unsigned(signed: Signed) -> None:
    _refused_everywhere(signed, signed.repo, signed.unsigned_id, "is not signed")
    result = run_bika("verify", signed.unsigned_id, "--trust-unsigned", env=signed.env())
    assert result.returncode == 0, result.stderr
    assert "not signed; used because of --trust-unsigned" in result.stderr
    listed = run_bika("list", "--json", env=signed.env())
    damaged = json.loads(listed.stdout)["damaged"]
    assert [d["id"] for d in damaged] == [signed.unsigned_id]


def test_a_signed_backup_restores_drills_and_copies_on_the_pinned_host(signed: Signed) -> None:
    out = signed.folder / "restored.sql"
    restore = run_bika("restore", signed.signed_id, "--to-file", str(out), env=signed.env())
    assert restore.returncode == 0, restore.stderr
    signing = {"BIKA_SIGNING_KEY": str(signed.folder / "signing.key")}
    drill = run_bika("drill", signed.signed_id, "--json", env=signed.env(**signing))
    assert drill.returncode == 0, drill.stderr
    record = next((signed.repo / "drills" / signed.signed_id).glob("*.json"))
    assert record.with_suffix(".json.sig").is_file()
    shown = run_bika("show", signed.signed_id, "--json", env=signed.env())
    assert len(json.loads(shown.stdout)["drills"]) == 1
    # a drill record nobody pinned signed proves nothing here: it counts as no drill
    repo = signed.copy("drill")
    next((repo / "drills" / signed.signed_id).glob("*.json.sig")).unlink()
    strict = run_bika("show", signed.signed_id, "--json", env=signed.env(BIKA_REPO=str(repo)))
    assert json.loads(strict.stdout)["drills"] == []
    # bika copy takes the signature along: the second repository verifies on the pinned host
    second = signed.folder / f"second-{uuid.uuid4().hex[:6]}"
    copied = run_bika("copy", signed.signed_id, "--to", str(second), "--init", env=signed.env())
    assert copied.returncode == 0, copied.stderr
    verified = run_bika("verify", signed.signed_id, env=signed.env(BIKA_REPO=str(second)))
    assert verified.returncode == 0, verified.stderr


def test_a_repository_from_before_signing_reads_as_before(signed: Signed, tmp_path: Path) -> None:
    repo = signed.copy("legacy")
    (repo / "bika.json").write_text(
        json.dumps(
            {
                k: v
                for k, v in json.loads((repo / "bika.json").read_text()).items()
                if k != "signers"
            }
        )
    )
    for sig in repo.rglob("*.sig"):
        sig.unlink()
    result = run_bika("verify", "--repo", str(repo))
    assert result.returncode == 0, result.stderr
    assert "signed" not in result.stderr


def test_doctor_says_whether_backups_are_signed_and_pinned() -> None:
    ours, theirs = "ed25519:" + "A" * 43, "ed25519:" + "B" * 43
    assert signing_check(None, [], []).level == "info"  # not signed at all
    unpinned = signing_check(None, [], [ours])
    assert unpinned.level == "warn" and ours in unpinned.fix
    assert signing_check(None, [ours], [ours]).level == "ok"
    assert signing_check(ours, [], [ours]).level == "ok"  # the backup host
    stranger = signing_check(None, [ours], [ours, theirs])
    assert stranger.level == "warn" and theirs[:16] in stranger.message
