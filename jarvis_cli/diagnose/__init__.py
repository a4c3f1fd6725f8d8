"""`jarvis diagnose`: the debugging decision tree (docs/background.md), walked automatically."""
