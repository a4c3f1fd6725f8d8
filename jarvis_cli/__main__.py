"""`python -m jarvis_cli`: the same as the `jarvis` console script."""

from .entry import run

run()
