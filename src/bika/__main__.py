"""`python -m bika`: the same as the bika command."""

from bika.launcher import run

run()
