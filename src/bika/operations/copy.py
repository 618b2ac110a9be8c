"""Copying backups to a second repository (the 3-2-1 rule), streamed object by object.

Each artifact's sha256 and size are checked against the manifest on the way; the manifest is last.

A copy holds no plaintext and needs no key: it moves the encrypted bytes as they are, which is
why both repositories must encrypt to the same recipients. The destination's own storage class
for the backup's kind applies. A backup counts as present in the destination once its manifest
is there, so an interrupted copy is invisible and the next run redoes it: artifacts it left
behind are deleted and written again rather than trusted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from bika.errors import IntegrityError, ObjectExists, ObjectNotFound, RepositoryError
from bika.repository import Artifact, Manifest, Repository
from bika.repository.repository import CONFIG_KEY, MANIFEST
from bika.storage import Storage, write_bytes
from bika.stream import Progress

CHUNK = 1 << 20

CopyStatus = Literal["copied", "present", "failed"]


@dataclass
class CopyResult:
    backup_id: str
    status: CopyStatus
    stored_bytes: int = 0
    """Bytes written to the destination (artifacts and manifest)."""
    detail: str = ""


@dataclass
class CopyReport:
    source: str
    destination: str
    results: list[CopyResult] = field(default_factory=list)

    def count(self, status: CopyStatus) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        return self.count("failed") == 0


def open_destination(source: Repository, storage: Storage, *, init: bool) -> Repository:
    """The repository to copy into; with init, created (same recipients) if it is missing.

    Refuses one whose recipients differ: its bika.json would name keys that cannot read the
    copied backups, and the keys that can would be missing from it."""
    if storage.stat(CONFIG_KEY) is None:
        if not init:
            raise RepositoryError(
                f"no bika repository at {storage.url}; pass --init to create it with the"
                f" same recipients as {source.url}"
            )
        return Repository.init(storage, source.recipients)
    dest = Repository.open(storage)
    if dest.id == source.id:
        raise RepositoryError(
            f"{dest.url} is the repository {source.url} itself (same id {dest.id}); copy to"
            " another one"
        )
    if sorted(dest.recipients) != sorted(source.recipients):
        missing = sorted(set(source.recipients) - set(dest.recipients))
        extra = sorted(set(dest.recipients) - set(source.recipients))
        what = "; ".join(
            part
            for part in (
                f"it lacks {', '.join(_short(r) for r in missing)}" if missing else "",
                f"it adds {', '.join(_short(r) for r in extra)}" if extra else "",
            )
            if part
        )
        raise RepositoryError(
            f"{dest.url} encrypts to other recipients than {source.url} ({what}): copied"
            " backups stay encrypted to the source's keys, so the destination must list exactly"
            " those; copy into a repository made with the same --recipient keys (or --init a"
            " new one)"
        )
    return dest


def copy_backups(
    source: Repository,
    dest: Repository,
    backup_ids: list[str],
    *,
    storage_class: Callable[[str], str | None] = lambda kind: None,
    progress: Progress | None = None,
    on_result: Callable[[CopyResult], None] | None = None,
) -> CopyReport:
    """Copy each backup that the destination lacks, oldest first.

    A backup whose source bytes do not match its manifest (corrupted, truncated, missing) is
    reported as failed and the others go on; a storage failure stops the run."""
    report = CopyReport(source.url, dest.url)
    # the destination accepts manifests of the source's repository (and of those the source
    # holds copies of) as its own, also for backups an older bika copied there
    for repository_id in sorted({source.id, *source.copy_sources()}):
        dest.add_copy_source(repository_id)
    present = set(dest.backup_ids())
    for backup_id in sorted(backup_ids):
        if backup_id in present:
            result = CopyResult(backup_id, "present", detail=f"already in {dest.url}")
        else:
            try:
                result = _copy_backup(source, dest, backup_id, storage_class, progress)
            except (IntegrityError, ObjectNotFound) as exc:
                result = CopyResult(backup_id, "failed", detail=str(exc))
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    return report


def _copy_backup(
    source: Repository,
    dest: Repository,
    backup_id: str,
    storage_class: Callable[[str], str | None],
    progress: Progress | None,
) -> CopyResult:
    manifest, raw = source.read_manifest(backup_id)
    written = 0
    for name, artifact in manifest.artifacts.items():
        written += _copy_artifact(
            source, dest, manifest, name, artifact, storage_class(manifest.kind), progress
        )
    key = dest.artifact_key(backup_id, MANIFEST)
    dest.add_copy_source(manifest.repository_id)  # so dest accepts the manifest as its own
    try:
        # The stored bytes, not a re-serialisation: the copy is the same backup, down to its
        # repository_id, which keeps naming the repository the backup was taken in.
        write_bytes(dest.storage, key, raw)
    except ObjectExists:
        return CopyResult(backup_id, "present", written, f"copied meanwhile into {dest.url}")
    return CopyResult(backup_id, "copied", written + len(raw))


def _copy_artifact(
    source: Repository,
    dest: Repository,
    manifest: Manifest,
    name: str,
    artifact: Artifact,
    storage_class: str | None,
    progress: Progress | None,
) -> int:
    label = f"{manifest.id}/{name}"
    if dest.storage.stat(artifact.key) is not None:
        dest.storage.delete(artifact.key)  # left by an interrupted copy; not trusted
    digest = hashlib.sha256()
    size = 0
    with (
        source.storage.open(artifact.key) as reader,
        dest.storage.create(artifact.key, storage_class=storage_class) as sink,
    ):
        # An exception in this block aborts the upload: a bad artifact never lands.
        while chunk := reader.read(CHUNK):
            size += len(chunk)
            if size > artifact.stored_size:
                break
            digest.update(chunk)
            sink.write(chunk)
            if progress is not None:
                progress(size, size)
        if size != artifact.stored_size:
            got = f"over {artifact.stored_size}" if size > artifact.stored_size else str(size)
            raise IntegrityError(
                f"{label} in {source.url} holds {got} bytes, the manifest says"
                f" {artifact.stored_size} (truncated or replaced); not copied"
            )
        if digest.hexdigest() != artifact.stored_sha256:
            raise IntegrityError(
                f"{label} in {source.url} has sha256 {digest.hexdigest()[:16]}…, the manifest"
                f" says {artifact.stored_sha256[:16]}… (corrupted); not copied"
            )
    return size


def _short(recipient: str) -> str:
    return f"{recipient[:12]}…" if len(recipient) > 16 else recipient
