"""Restoring a backup's project artifacts: `functions` unpacked into a folder, `env` written
to a new file (mode 0600). Both are checked against the manifest's sha256."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path

from bika.errors import IntegrityError, RestoreError
from bika.repository import Manifest, Repository
from bika.repository.manifest import Artifact
from bika.stream import StreamStats, decode
from bika.supabase.functions import checked_member
from bika.supabase.secrets import parse_env

PROJECT_ARTIFACTS = ("functions", "env")


@dataclass(frozen=True)
class Unpacked:
    artifact: str
    path: Path
    files: int
    """Files (functions) or variables (env) written."""


def _artifact(manifest: Manifest, name: str) -> Artifact:
    artifact = manifest.artifacts.get(name)
    if artifact is None:
        held = ", ".join(sorted(manifest.artifacts))
        raise RestoreError(
            f"backup {manifest.id} has no {name} artifact (it holds {held}); was [supabase]"
            f" functions_dir / [secrets] set when it was taken?"
        )
    return artifact


def _check(manifest: Manifest, name: str, artifact: Artifact, stats: StreamStats) -> None:
    if (stats.stored_sha256, stats.plain_sha256) != (artifact.stored_sha256, artifact.plain_sha256):
        raise IntegrityError(
            f"{manifest.id}/{name}: what was decrypted is not what the manifest describes"
            " (sha256 differs): the stored object was replaced or damaged; run `bika verify`"
        )


def restore_env(
    repo: Repository, manifest: Manifest, identities: list[object], path: Path
) -> Unpacked:
    """Write the env artifact to a new file, mode 0600; an existing file is never replaced."""
    artifact = _artifact(manifest, "env")
    plain = io.BytesIO()
    with repo.storage.open(artifact.key) as source:
        stats = decode(source, plain, identities, name=f"{manifest.id}/env")
    _check(manifest, "env", artifact, stats)
    text = plain.getvalue()
    count = len(parse_env(text.decode(), "env artifact"))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise RestoreError(
            f"{path} exists; give a new file name (it is never overwritten)"
        ) from None
    except OSError as exc:
        raise RestoreError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask
        out.write(text)
    return Unpacked("env", path, count)


def restore_functions(
    repo: Repository, manifest: Manifest, identities: list[object], dest: Path
) -> Unpacked:
    """Unpack the functions artifact into dest (new or empty); a member that would land
    outside it stops the unpacking, and what was unpacked is removed."""
    artifact = _artifact(manifest, "functions")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise RestoreError(f"{dest} exists and is not an empty folder; give a new folder")
    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    outcome: list[StreamStats | BaseException] = []

    def decrypt() -> None:
        try:
            with repo.storage.open(artifact.key) as source, os.fdopen(write_end, "wb") as pipe:
                outcome.append(decode(source, pipe, identities, name=f"{manifest.id}/functions"))
        except BaseException as exc:  # handed to the unpacking thread
            outcome.append(exc)

    thread = threading.Thread(target=decrypt, name="bika-functions-decode", daemon=True)
    thread.start()
    files = 0
    try:
        with os.fdopen(read_end, "rb") as pipe:
            try:
                with tarfile.open(fileobj=pipe, mode="r|") as tar:
                    for member in tar:
                        checked_member(member, dest)
                        tar.extract(member, dest, filter="data")
                        files += member.isfile()
            except tarfile.TarError as exc:
                raise RestoreError(
                    f"{manifest.id}/functions is not a readable tar: {exc}"
                ) from None
            finally:
                while pipe.read(1 << 20):  # let the decrypting thread finish
                    pass
        thread.join()
        result = outcome[0] if outcome else RestoreError("decryption did not finish")
        if isinstance(result, BaseException):
            raise result
        _check(manifest, "functions", artifact, result)
    except BaseException as exc:
        thread.join()
        cause = outcome[0] if outcome else None
        if made:
            shutil.rmtree(dest, ignore_errors=True)
        else:
            for child in dest.iterdir():
                shutil.rmtree(
                    child
                ) if child.is_dir() and not child.is_symlink() else child.unlink()
        # a key that does not open it, or a damaged object, ends the tar early: say that
        if isinstance(cause, BaseException) and cause is not exc:
            raise cause from None
        raise
    return Unpacked("functions", dest, files)
