"""`jarvis diagnose`: the seeds' debugging decision tree, walked automatically."""
