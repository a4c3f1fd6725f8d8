"""The optional C speedups; all other configuration is in pyproject.toml.

- `jarvis._linesink`: the server's event-log lines (`LineSink` in jarvis/_sink.py is its
  Python twin).
- `jarvis_cli.logs._hotscan`: the logfmt hot loop of `jarvis diagnose`.

A setup.py because `ext-modules` in pyproject.toml is still experimental in setuptools.
`optional=True`: without a compiler the install still succeeds, and each runs its
pure-Python twin (slower, same results).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("jarvis._linesink", ["jarvis/_linesink.c"], optional=True),
        Extension("jarvis_cli.logs._hotscan", ["jarvis_cli/logs/_hotscan.c"], optional=True),
    ]
)
