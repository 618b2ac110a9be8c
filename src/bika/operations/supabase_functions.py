"""The `functions` artifact: a Supabase project's Edge Functions (with supabase/config.toml
and supabase/migrations/), as `git archive` of the commit when the folder is in a git work tree,
else as a tar of the folder; streamed, never written to a temporary file."""

from __future__ import annotations

import os
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bika.errors import ConfigError, DumpError
from bika.repository.manifest import FunctionsSource
from bika.stream import Readable
from bika.supabase.functions import SIBLINGS, FunctionsLayout, layout

FUNCTIONS_ARTIFACT = "functions.tar.zst.age"
GIT_TIMEOUT = 60


@dataclass(frozen=True)
class GitTree:
    top: Path
    prefix: str
    """The archive root relative to the work tree's top, `/`-separated ("" at the top)."""
    commit: str
    committed: tuple[str, ...]
    """The layout's members that HEAD holds."""


@dataclass
class FunctionsExtra:
    """A backup's `functions` artifact (operations.backup.Extra)."""

    layout: FunctionsLayout
    git: GitTree | None
    warnings: list[str] = field(default_factory=list)
    name: str = "functions"
    file: str = FUNCTIONS_ARTIFACT
    content: str = "tar"
    _files: int = 0

    @contextmanager
    def open(self) -> Iterator[Readable]:
        if self.git is not None:
            with self._git_archive(self.git) as stream:
                yield stream
        else:
            with self._folder_tar() as stream:
                yield stream

    def manifest_fields(self) -> dict[str, Any]:
        git = self.git
        return {
            "functions": FunctionsSource(
                source="git" if git else "folder",
                commit=git.commit if git else None,
                uncommitted=bool(git and self.warnings),
                paths=list(git.committed if git else self.layout.members),
                files=self._files,
            )
        }

    @contextmanager
    def _git_archive(self, git: GitTree) -> Iterator[Readable]:
        tree = f"{git.commit}:{git.prefix}" if git.prefix else git.commit
        self._files = len(
            _git(git.top, "ls-tree", "-r", "--name-only", tree, "--", *git.committed).splitlines()
        )
        argv = ["git", "-C", str(git.top), "archive", tree, "--", *git.committed]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
            assert child.stdout is not None and child.stderr is not None
            yield child.stdout
            # what is left unread (an interrupted upload) must not block git on a full pipe
            child.stdout.close()
            error = child.stderr.read().decode(errors="replace").strip()
            if child.wait() != 0:
                raise DumpError(f"git archive of {self.layout.root} failed: {error[-300:]}")

    @contextmanager
    def _folder_tar(self) -> Iterator[Readable]:
        read_end, write_end = os.pipe()
        failure: list[BaseException] = []

        def count(info: tarfile.TarInfo) -> tarfile.TarInfo:
            if info.isfile():
                self._files += 1
            # owners and times of the host are not what a restore needs; modes are
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            return info

        def write() -> None:
            try:
                with (
                    os.fdopen(write_end, "wb") as out,
                    tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar,
                ):
                    for member in self.layout.members:
                        tar.add(self.layout.root / member, arcname=member, filter=count)
            except BaseException as exc:  # handed to the reading thread
                failure.append(exc)

        writer = threading.Thread(target=write, name="bika-functions-tar", daemon=True)
        with os.fdopen(read_end, "rb") as stream:
            writer.start()
            try:
                yield stream
            finally:
                stream.close()  # a writer still writing gets EPIPE and stops
                writer.join()
        if failure:
            exc = failure[0]
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DumpError(f"cannot archive {self.layout.root}: {reason}")


def prepare_functions(functions_dir: Path) -> FunctionsExtra:
    """Look at the folder before the backup starts: what to archive, from git or the disk,
    and whether git's commit lacks changes made since (a warning, not a failure)."""
    folder = functions_dir.expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"[supabase] functions_dir {functions_dir} is not a folder; fix the setting (a path"
            " from the current directory, or absolute for scheduled runs)"
        )
    folder = folder.resolve()
    exists = {name for name in SIBLINGS if (folder.parent / name).exists()}
    shape = layout(folder, exists)
    git, why_not = _git_tree(shape)
    extra = FunctionsExtra(shape, git)
    if why_not:
        extra.warnings.append(why_not)
    if git is not None:
        paths = [f"{git.prefix}/{m}" if git.prefix else m for m in shape.members]
        status = _git(git.top, "status", "--porcelain", "--", *paths)
        if status.strip():
            changed = len(status.splitlines())
            extra.warnings.append(
                f"{folder} has {changed} uncommitted change(s); the backup holds commit"
                f" {git.commit[:12]}, without them (commit them, or they are not kept)"
            )
        missing = [m for m in shape.members if m not in git.committed]
        if missing:
            extra.warnings.append(
                f"not in commit {git.commit[:12]} and not kept: {', '.join(missing)}"
            )
    return extra


def _git_tree(shape: FunctionsLayout) -> tuple[GitTree | None, str | None]:
    """The git work tree holding the folder, with the members its HEAD has, or None and why
    not when it is worth saying (None, None: in no work tree, or git is not installed)."""
    try:
        top = Path(_git(shape.root, "rev-parse", "--show-toplevel").strip()).resolve()
    except OSError:
        return None, None
    except DumpError as exc:
        if "safe.directory" in str(exc) or "dubious ownership" in str(exc):
            return None, f"git refuses the work tree ({exc}); archived the folder as it is"
        return None, None
    try:
        commit = _git(shape.root, "rev-parse", "--verify", "HEAD^{commit}").strip()
    except DumpError:
        return None, f"{top} has no commit yet; archived the folder as it is"
    prefix = shape.root.resolve().relative_to(top).as_posix()
    prefix = "" if prefix == "." else prefix
    committed = tuple(
        member
        for member in shape.members
        if _in_commit(top, commit, f"{prefix}/{member}" if prefix else member)
    )
    if not committed or committed[0] != shape.members[0]:
        return None, (
            f"{shape.members[0]} is not in commit {commit[:12]}; archived the folder as it is"
        )
    return GitTree(top, prefix, commit, committed), None


def _in_commit(top: Path, commit: str, path: str) -> bool:
    try:
        _git(top, "cat-file", "-e", f"{commit}:{path}")
    except DumpError:
        return False
    return True


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(cwd), *args],
            capture_output=True,
            timeout=GIT_TIMEOUT,
            check=False,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        raise DumpError(f"git {args[0]} in {cwd} took over {GIT_TIMEOUT} s") from None
    if done.returncode != 0:
        raise DumpError(f"git {args[0]} in {cwd}: {done.stderr.decode(errors='replace')[-200:]}")
    return done.stdout.decode(errors="replace")
