"""Supabase: what the platform manages in a project's database, and how bika treats it.

Pure modules (no I/O): `profile` (the facts), `roles` (filtering a roles dump), `selection`
(which archive entries a restore into a project applies), `comparison` (after a restore).
"""
