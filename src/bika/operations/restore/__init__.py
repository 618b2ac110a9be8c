"""Restoring a backup into a database or a file. The entry points:

- `plan_restore` (restore.py): read the archive's TOC and the target's facts, choose the entries
  (selection.py), check (preflight.py); changes nothing, returns a RestorePlan (plan.py).
- `restore_backup` (restore.py): the plan carried out by the pg_restore driver
  (bika.postgres.pg_restore), then the proof: every table's exact rows, else RowsDiffer.
- `export_backup` (restore.py): the plan written as an SQL script or the archive itself.
"""

from bika.operations.restore.plan import (
    RestoreOptions,
    RestorePlan,
    Selection,
    exclude_entries,
)
from bika.operations.restore.restore import (
    ExportReport,
    PreflightRefused,
    RestoreReport,
    RowsDiffer,
    TableCheck,
    export_backup,
    plan_restore,
    restore_backup,
)

__all__ = [
    "ExportReport",
    "PreflightRefused",
    "RestoreOptions",
    "RestorePlan",
    "RestoreReport",
    "RowsDiffer",
    "Selection",
    "TableCheck",
    "exclude_entries",
    "export_backup",
    "plan_restore",
    "restore_backup",
]
