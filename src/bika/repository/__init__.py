"""The repository: its format, backup ids, manifests and listing. Knows nothing of PostgreSQL."""

from bika.repository.manifest import Artifact, DumpSource, Manifest, TableStats
from bika.repository.repository import DamagedBackup, Repository

__all__ = ["Artifact", "DamagedBackup", "DumpSource", "Manifest", "Repository", "TableStats"]
