"""Packaging: the import names, the public surface, and the console script."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types

import pytest

import jarvis


@pytest.mark.e2e
def test_cli_folder_is_installed_as_jarvis_cli_never_as_bare_cli() -> None:
    """`jarvis_cli` imports; a bare `cli` does not resolve from site-packages."""
    assert importlib.util.find_spec("jarvis_cli") is not None
    probe = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('cli'))"],
        capture_output=True, text=True, timeout=30, check=False, cwd="/",
    )  # fmt: skip
    assert probe.stdout.strip() == "None"


def test_public_names_are_unique_and_importable() -> None:
    """`jarvis.__all__` names each public object once (ruff RUF022 keeps it sorted)."""
    assert len(set(jarvis.__all__)) == len(jarvis.__all__)
    for name in jarvis.__all__:
        assert hasattr(jarvis, name)


def test_every_public_name_of_the_package_is_in_all() -> None:
    """Nothing is public by accident (httpx's `test_exported_members`): every name of
    `vars(jarvis)` without a leading `_`, submodules aside, is one `__all__` promises;
    a stray `from __future__ import annotations` would show up as `annotations`. The names
    load on first use, so each is touched first; `dir(jarvis)` lists them before."""
    exported = set(jarvis.__all__)
    assert exported <= set(dir(jarvis))
    for name in exported:
        getattr(jarvis, name)
    public = {
        name
        for name, value in vars(jarvis).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public - exported == set()


@pytest.mark.e2e
def test_import_jarvis_loads_its_names_only_when_used() -> None:
    """`import jarvis` imports none of its modules (each public name loads on first use),
    and an unknown name is an AttributeError, as for any module."""
    code = (
        "import sys, jarvis; loaded = [m for m in sys.modules if m.startswith('jarvis.')]; "
        "from jarvis import EVENTS; print(loaded, 'jarvis.vocabulary' in sys.modules, "
        "'jarvis._guard' in sys.modules)"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert probe.stdout.split() == ["[]", "True", "False"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        jarvis.nope  # noqa: B018


@pytest.mark.e2e
def test_library_never_imports_the_cli_or_locust() -> None:
    """jarvis/ stands alone: importing it pulls in neither jarvis_cli nor locust."""
    code = (
        "import sys, jarvis.server.app, jarvis.server; "
        "print(any(m.startswith(('jarvis_cli', 'locust')) for m in sys.modules))"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert probe.stdout.strip() == "False", probe.stderr


@pytest.mark.e2e
def test_import_jarvis_and_an_in_process_guard_never_load_redis() -> None:
    """redis is the `fleet` extra: `jarvis._redis_registry` (and redis with it) loads only
    when a guard is given `registry="redis://..."`; `import jarvis` loads neither it nor
    prometheus_client, and a guard of one process still loads no redis."""
    code = (
        "import sys, jarvis; "
        "assert 'redis' not in sys.modules and 'prometheus_client' not in sys.modules; "
        "jarvis.StreamGuard(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'redis' "
        "or m == 'jarvis._redis_registry'))"
    )
    probe = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )
    assert probe.stdout.strip() == "[]", probe.stderr


def test_every_package_folder_is_listed_for_the_wheel_and_jarvis_is_typed() -> None:
    """A wheel holds only the packages pyproject lists: every folder with an `__init__.py`
    under jarvis/ and jarvis_cli/ is there (a missed one imports here and fails once installed),
    and so is every folder of data files (each with its package-data globs); `py.typed`
    ships so users' type checkers read jarvis's annotations."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    found = set()
    for top, name in (("jarvis", "jarvis"), ("jarvis_cli", "jarvis_cli")):
        for folder in [root / top, *(p for p in (root / top).rglob("*") if p.is_dir())]:
            if folder.name == "__pycache__" or not any(folder.iterdir()):
                continue
            parts = folder.relative_to(root / top).parts
            found.add(".".join((name, *parts)))
            if not (folder / "__init__.py").exists():  # data only: its files are listed
                assert ".".join((name, *parts)) in setuptools["package-data"], folder
    assert found == listed
    assert (root / "jarvis" / "py.typed").exists()
