"""Operations: what backup, verify, restore, drill, prune, check, copy, doctor and the daemon
mean; each a function over plain objects. Policy only: PostgreSQL's mechanics are in postgres/.
"""
