"""Edge Functions: which parts of a Supabase project folder a backup keeps, and which tar
members a restore may write. Pure: the operations do the git, tar and file work."""

from __future__ import annotations

import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bika.errors import RestoreError

# next to functions/ in the supabase/ folder, kept with it when present
SIBLINGS = ("config.toml", "migrations")


@dataclass(frozen=True)
class FunctionsLayout:
    """Where the archive is rooted and the paths (relative to it, `/`-separated) it holds."""

    root: Path
    members: tuple[str, ...]


def layout(functions_dir: Path, exists: set[str]) -> FunctionsLayout:
    """For `supabase/functions`, the root is the folder holding `supabase/`, and the archive
    holds `supabase/functions` plus `supabase/config.toml` and `supabase/migrations` when they
    exist (exists: the sibling names found on disk); any other folder is archived alone."""
    parent = functions_dir.parent
    if parent.name == "supabase":
        members = [f"supabase/{functions_dir.name}"]
        members += [f"supabase/{name}" for name in SIBLINGS if name in exists]
        return FunctionsLayout(parent.parent, tuple(members))
    return FunctionsLayout(parent, (functions_dir.name,))


def checked_member(member: tarfile.TarInfo, dest: Path) -> Path:
    """Where a tar member goes under dest; a RestoreError for any member that would land
    outside it (absolute, `..`, a link pointing out) or is not a file, folder or link."""
    name = member.name
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name or not name.strip("/."):
        raise RestoreError(
            f"the archive holds a path outside the target folder ({name!r}); nothing more is"
            " unpacked: the artifact is not one bika wrote"
        )
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise RestoreError(f"the archive holds a device or special file ({name!r}); refused")
    if member.issym() or member.islnk():
        target = member.linkname
        base = posixpath.dirname(name) if member.issym() else ""
        joined = posixpath.normpath(posixpath.join(base, target))
        if posixpath.isabs(target) or joined == ".." or joined.startswith("../"):
            raise RestoreError(
                f"the archive holds a link pointing outside the target folder ({name!r} →"
                f" {target!r}); refused"
            )
    return dest.joinpath(*path.parts)
