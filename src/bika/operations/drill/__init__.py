"""Restore drills. The entry point is `run_drill` (drill.py): a scratch database (scratch.py),
the backup's roles (roles.py), the restore operation, tables read as they load (watch.py), and
the comparison with the backup (compare.py), recorded in drills/.
"""

from bika.operations.drill.drill import DrillOptions, DrillOutcome, run_drill

__all__ = ["DrillOptions", "DrillOutcome", "run_drill"]
