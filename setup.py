"""The optional C scanner of `jarvis diagnose`; all other configuration is in pyproject.toml.

A setup.py because `ext-modules` in pyproject.toml is still experimental in setuptools.
`optional=True`: without a compiler the install still succeeds, and diagnose runs its
pure-Python loop (slower, same results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("jarvis_cli.logs._hotscan", ["cli/logs/_hotscan.c"], optional=True),
    ]
)
