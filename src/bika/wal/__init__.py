"""Continuous WAL archiving: `bika wal push` (archive_command) and `bika wal fetch`
(restore_command), lean enough for PostgreSQL to start once per 16 MB segment.

Everything imported here is the standard library, zstandard, pyrage and obstore (for s3://):
the import-budget test keeps click, pydantic, psycopg and rich out.
"""
