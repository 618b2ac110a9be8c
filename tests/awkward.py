"""A small schema of the awkward cases a backup must round-trip exactly (awkward.sql): odd names,
partitions, large objects, an empty table, a materialized view. Deterministic like the sample.
"""

from __future__ import annotations

from pathlib import Path

SQL: str = (Path(__file__).parent / "awkward.sql").read_text("utf-8")

TABLES: tuple[tuple[str, str], ...] = (
    ("public", "texts"),
    ("public", "blobs"),
    ("public", "measurements"),
    ("ledger", "accounts"),
    ("ledger", "audit_log"),
    ("Ibimina Ltd", "Members"),
    ("Ibimina Ltd", "members"),
    ("ledger", "payments_2023"),
    ("public", "payments_2024"),
    ("public", "payments_default"),
    ("public", "secrets"),
    ("public", "documents"),
    ("ledger", "pending_transfers"),
    ("public", "session_cache"),
    ("public", "misc_types"),
)
"""Every table of SQL that pg_dump dumps data for: the leaf partitions of public.payments
(not the partitioned parent itself) and the empty table, ledger.pending_transfers."""

EMPTY_TABLES: tuple[tuple[str, str], ...] = (("ledger", "pending_transfers"),)
"""The tables of TABLES that hold no rows."""

MATERIALIZED_VIEWS: tuple[tuple[str, str], ...] = (("ledger", "monthly_totals"),)
"""Materialized views of SQL; a restore refreshes them, pg_dump dumps no rows for them."""

LARGE_OBJECTS: tuple[int, ...] = (424242, 424243, 424244, 424245)
"""Oids of the large objects SQL creates (424244 is empty, 424245 is orphaned)."""
