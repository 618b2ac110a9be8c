"""Operations: backup, verify, restore, demo; each a function over plain objects."""
