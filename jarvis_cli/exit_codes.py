"""Named exit codes, shared by every `jarvis` command.

Every `JarvisError` carries its own as `exit_code` (jarvis/exceptions.py draws the tree);
`jarvis_cli/main.py` exits with it, in one place.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    #: The check ran and found a failure (a hang, a leak, a crossed threshold).
    FAILURE = 1
    #: Bad flags or arguments.
    USAGE = 2
    #: The server is unreachable or failed to start; input unusable.
    UNAVAILABLE = 3
    INTERRUPTED = 130
