"""`python -m bika`: the same as the bika command."""

from bika.cli.main import run

run()
