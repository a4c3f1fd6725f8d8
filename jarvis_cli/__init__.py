"""The `jarvis` command: the reference server and the tools that test servers.

Installed as the import package `jarvis_cli` (never a bare `cli`). It
imports `jarvis`; `jarvis` never imports it.
"""
