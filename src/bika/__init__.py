"""bika: encrypted, verified, drilled backups of PostgreSQL and Supabase databases."""

__version__ = "0.1.0"
