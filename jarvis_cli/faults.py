"""The `--fault` option: one definition and one validation for every command that has it."""

from typing import Annotated

import typer

from jarvis.exceptions import ConfigError
from jarvis.faults import Fault

FAULT_NAMES = ", ".join(f.value for f in Fault)

#: `--fault` of the tools that start the embedded server (verify-hang, swarm).
EmbeddedFaultOption = Annotated[
    list[str] | None,
    typer.Option(
        "--fault",
        help=f"Embedded server only: switch on a deliberate bug (repeatable): {FAULT_NAMES}.",
        show_default=False,
    ),
]


def parse_faults(names: list[str] | None) -> frozenset[Fault]:
    """Fault names to faults, refusing an unknown one with the list of valid names."""
    faults: set[Fault] = set()
    for name in names or []:
        try:
            faults.add(Fault(name))
        except ValueError:
            raise ConfigError(f"unknown --fault {name!r}; choose from: {FAULT_NAMES}") from None
    return frozenset(faults)


def embedded_faults(names: list[str] | None, url: str | None) -> tuple[str, ...]:
    """`--fault` for a tool: valid names, and only when it starts the embedded server."""
    if not names:
        return ()
    if url is not None:
        raise ConfigError("--fault switches bugs on in the embedded server; it cannot with --url")
    parse_faults(names)
    return tuple(names)
