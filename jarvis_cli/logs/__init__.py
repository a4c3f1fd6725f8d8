"""Reading jarvis logs back: sources, a fast scanner, and stream lifecycle reconstruction.

Shared by `jarvis diagnose` and `jarvis verify-hang` (its `leaks` check), so
there is one implementation of "what happened to each stream".
"""
