"""One definition of each guard setting: `GuardSettings` gives the library's keyword
defaults, the server config's defaults and `jarvis serve`'s options, and one message for
a value that cannot work, whichever surface it came through."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import typer

import jarvis
from jarvis import GuardSettings, StreamGuard
from jarvis.config import ServerConfig
from jarvis.settings import SETTINGS, Setting
from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.main import app, main

ROOT = Path(__file__).resolve().parent.parent

#: A value each setting refuses, as the command line would parse it.
BAD: dict[str, Any] = {
    "cancel_wait": 0.0,
    "flush_ms": -1.0,
    "flush_bytes": 0,
    "send_timeout": -2.5,
    "shutdown_timeout": 0.0,
    "log_format": "xml",
    "watchdog_ms": 5.0,
    "lag_report_s": -1.0,
    "registry": "http://127.0.0.1:6379/0",
    "resume_ttl": -1.0,
    "resume_max_mb": 0.0,
    "detach_grace": -1.0,
    "on_busy": "drop",
    "queue_wait": 0.0,
    "ping": -1.0,
}


def serve_options() -> dict[str, typer.core.TyperOption]:
    """`jarvis serve`'s options by flag, as typer built them."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    serve = group.get_command(typer.Context(group), "serve")  # built on first use
    assert serve is not None
    return {
        flag: param
        for param in serve.params
        if isinstance(param, typer.core.TyperOption)
        for flag in param.opts
    }


def test_settings_are_the_fields_of_guard_settings_and_each_has_a_bad_value() -> None:
    """SETTINGS describes every field of GuardSettings, in order; this test knows a refused
    value for each (a new setting fails here until it is added to BAD)."""
    assert [s.name for s in SETTINGS] == [f.name for f in dataclasses.fields(GuardSettings)]
    assert set(BAD) == {s.name for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_each_surface_takes_its_default_from_the_one_definition(setting: Setting) -> None:
    """The StreamGuard keyword default, the GuardSettings default, the default nested in
    ServerConfig and `jarvis serve`'s option default are one value; the option's flag and
    help are the setting's."""
    keyword = inspect.signature(StreamGuard).parameters[setting.name]
    assert keyword.kind is inspect.Parameter.KEYWORD_ONLY
    assert keyword.default == setting.default
    assert getattr(GuardSettings(), setting.name) == setting.default
    assert getattr(ServerConfig().guard, setting.name) == setting.default
    option = serve_options()[setting.flag]
    assert option.default == setting.default
    assert option.help is not None and option.help.startswith(setting.help)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_a_bad_value_gets_the_same_message_from_library_server_and_command_line(
    setting: Setting, capsys: pytest.CaptureFixture[str]
) -> None:
    """StreamGuard(...), ServerConfig(guard=GuardSettings(...)) and `jarvis serve <flag>`
    refuse the value with one message, naming the setting and its flag."""
    bad = BAD[setting.name]
    message = setting.error(bad)
    assert message.startswith(f"{setting.name} ({setting.flag}) must be ")
    with pytest.raises(jarvis.ConfigError) as library:
        StreamGuard(**{setting.name: bad})
    with pytest.raises(jarvis.ConfigError) as server:
        ServerConfig(guard=GuardSettings(**{setting.name: bad}))
    code = main(["serve", setting.flag, str(bad), "--port", "0", "--log-file", "-"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert str(library.value) == str(server.value) == message
    assert f"error: {message}" in " ".join(err.split())  # rich may wrap the line


def test_verify_hang_holds_its_cancel_wait_to_the_same_rule() -> None:
    """verify-hang's `--cancel-wait` is the server's: the same flag, and with --url the
    guard's default is assumed."""
    from jarvis_cli.verify.plan import CANCEL_WAIT, REMOTE_CANCEL_WAIT_S, Plan

    assert CANCEL_WAIT is GuardSettings.setting("cancel_wait")
    assert GuardSettings().cancel_wait == REMOTE_CANCEL_WAIT_S
    with pytest.raises(jarvis.ConfigError, match=re.escape(CANCEL_WAIT.error(0.0))):
        Plan(cancel_wait=0.0)


def test_from_settings_builds_the_guard_the_keywords_would() -> None:
    """`StreamGuard.from_settings(s)` is `StreamGuard(**fields of s)`: the guard reports
    the same settings either way."""
    settings = GuardSettings(cancel_wait=0.5, flush_ms=0, send_timeout=3.0)
    assert StreamGuard.from_settings(settings).settings == settings
    assert StreamGuard(cancel_wait=0.5, flush_ms=0, send_timeout=3.0).settings == settings
    assert StreamGuard.from_settings(settings).cancel_wait == 0.5


def test_the_library_page_lists_every_setting_with_its_default() -> None:
    """docs/library.md's settings table has one row per setting, its default the code's."""
    page = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]*)` \|", page, flags=re.MULTILINE))
    for setting in SETTINGS:
        assert setting.name in rows, setting.name
        shown = rows[setting.name]
        assert shown == repr(setting.default).replace("'", '"') or (
            isinstance(setting.default, float) and float(shown) == setting.default
        ), (setting.name, shown)
