"""No module touches another module's `_private` names: seams are public (house rule 19).

An AST walk over jarvis/ and jarvis_cli/ flags an attribute `x._name` whose `x` is not
`self` or `cls` and whose `_name` the module does not define itself, an import of a
`_name` (or of a `_module` of another package) from another module, and a method
overriding a private method of a base class imported from another module. Dunder
names are public by definition. (A subclass's own `self._x` is not checked.)
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("jarvis", "jarvis_cli")
#: What must stay, as `path: expression`, each with its reason. Keep it short.
ALLOWED: dict[str, str] = {
    # The watchdog logs where a blocked loop is stuck: CPython's documented way to read
    # another thread's stack is sys._current_frames() (faulthandler cannot return it).
    "jarvis/_watchdog.py: sys._current_frames": "documented in sys for this purpose",
    # A worker past its deadline after its supervisor died exits now, without running
    # atexit handlers that could block: os._exit is the documented call for that.
    "jarvis/server/fleet.py: os._exit": "documented in os for exiting a child at once",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _own_privates(tree: ast.Module) -> set[str]:
    """Every private name the module defines: functions, classes, variables, attributes
    it assigns on `self` or `cls`, parameters, dataclass and slot fields."""
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and _is_self(node.value)
        ):
            own.add(node.attr)
        elif isinstance(node, ast.arg):
            own.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            own.add(node.asname)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            own.add(node.value)  # `__slots__ = ("_name",)` and the like
    return {name for name in own if _private(name)}


def _module_parts(path: Path) -> tuple[str, ...]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imported_module(path: Path, node: ast.ImportFrom) -> tuple[str, ...]:
    if not node.level:
        return tuple((node.module or "").split("."))
    package = _module_parts(path)
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - node.level + 1]
    return (*base, *(node.module.split(".") if node.module else ()))


def _crosses_into_private_module(path: Path, module: tuple[str, ...]) -> str | None:
    """A `_module` may be imported only from its own package (its folder and below)."""
    for depth, part in enumerate(module):
        if _private(part):
            owner = module[:depth]
            here = _module_parts(path)
            if here[: len(owner)] != owner:
                return ".".join(module)
    return None


def _imported_classes(path: Path, tree: ast.Module) -> dict[str, type]:
    """The classes this module imports from jarvis/ or jarvis_cli/, by local name."""
    classes: dict[str, type] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = _imported_module(path, node)
        if module[0] not in PACKAGES:
            continue
        for alias in node.names:
            value = getattr(importlib.import_module(".".join(module)), alias.name, None)
            if isinstance(value, type):
                classes[alias.asname or alias.name] = value
    return classes


def _overrides(path: Path, tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Private methods a class defines over those of a base imported from another module."""
    imported = _imported_classes(path, tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = [imported[b.id] for b in node.bases if isinstance(b, ast.Name) and b.id in imported]
        for item in node.body:
            if not isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for base in bases:
                if _private(item.name) and hasattr(base, item.name):
                    yield item.lineno, f"overrides {base.__name__}.{item.name}"


def violations(path: Path, source: str | None = None) -> Iterator[str]:
    """What `path` (its text, or `source`) touches of other modules' private names."""
    tree = ast.parse(path.read_text(encoding="utf-8") if source is None else source)
    own = _own_privates(tree)
    rel = path.relative_to(ROOT).as_posix()
    for lineno, what in _overrides(path, tree):
        yield f"{rel}:{lineno}: {what}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if _is_self(node.value) or node.attr in own:
                continue
            yield f"{rel}:{node.lineno}: {ast.unparse(node)}"
        elif isinstance(node, ast.ImportFrom):
            module = _imported_module(path, node)
            if module[0] not in PACKAGES:
                continue
            for alias in node.names:
                if _private(alias.name):
                    yield f"{rel}:{node.lineno}: from {'.'.join(module)} import {alias.name}"
            crossed = _crosses_into_private_module(path, module)
            if crossed is not None:
                yield f"{rel}:{node.lineno}: from {crossed} import ..."
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module = tuple(alias.name.split("."))
                crossed = _crosses_into_private_module(path, module)
                if module[0] in PACKAGES and crossed is not None:
                    yield f"{rel}:{node.lineno}: import {crossed}"


def _checked_files() -> list[Path]:
    return [path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def _allowed(found: str) -> bool:
    path, _, what = found.split(":", 2)
    return f"{path}:{what}" in ALLOWED


def test_no_module_reads_or_imports_another_modules_private_names() -> None:
    """Across jarvis/ and jarvis_cli/ (logs/ and timeline/ aside for now), every private
    name used is the module's own, or `self`'s and `cls`'s; seams are public names."""
    found = [v for path in _checked_files() for v in violations(path)]
    assert [v for v in found if not _allowed(v)] == []


def test_the_walk_flags_what_it_is_meant_to_flag() -> None:
    """The checker itself: a foreign attribute and a foreign import are flagged; self's,
    the module's own and dunders are not."""
    source = (
        "from ._batcher import _Buffer\n"
        "from ._registry import StreamRegistry\n"
        "class A(StreamRegistry):\n"
        "    def __init__(self) -> None:\n"
        "        self._mine = 1\n"
        "    def f(self, other: object, guard: object) -> object:\n"
        "        guard._run_class = None\n"
        "        return (self._x, other._mine, other.__dict__, guard._parts)\n"
        "    async def _wait_for_previous(self) -> None: ...\n"
        "    def _a_helper_of_its_own(self) -> None: ...\n"
    )
    found = list(violations(ROOT / "jarvis" / "_probe.py", source))
    assert found == [
        "jarvis/_probe.py:9: overrides StreamRegistry._wait_for_previous",
        "jarvis/_probe.py:1: from jarvis._batcher import _Buffer",
        "jarvis/_probe.py:7: guard._run_class",
        "jarvis/_probe.py:8: guard._parts",
    ]
