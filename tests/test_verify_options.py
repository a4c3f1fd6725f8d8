"""One definition of verify-hang's options (`VerifyOptions`): the command's flags and the
pytest plugin's keywords are the same set, with the same defaults, checked by one code
path, so that a user's test can do whatever the command line can."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import typer

from jarvis.exceptions import ConfigError
from jarvis_cli import testing
from jarvis_cli.main import app
from jarvis_cli.verify import command
from jarvis_cli.verify.options import OPTIONS, VerifyOptions

ROOT = Path(__file__).resolve().parent.parent


def cli_options() -> dict[str, typer.core.TyperOption]:
    """`jarvis verify-hang`'s options by parameter name, as typer built them."""
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    verify = group.get_command(typer.Context(group), "verify-hang")  # built on first use
    assert verify is not None
    return {p.name: p for p in verify.params if isinstance(p, typer.core.TyperOption) and p.name}


def test_the_cli_and_the_plugin_take_the_same_options_from_one_definition() -> None:
    """The command's parameters are VerifyOptions' fields, in order, and the plugin takes
    exactly those names (it builds a VerifyOptions from its keywords): a flag added to one
    surface and not the other fails here."""
    fields = [f.name for f in dataclasses.fields(VerifyOptions)]
    assert [o.name for o in OPTIONS] == fields
    assert list(inspect.signature(command.verify_hang).parameters) == fields
    assert set(cli_options()) == set(fields)
    for name in fields:
        assert VerifyOptions.build(**{name: None}) == VerifyOptions()  # a keyword it takes
    with pytest.raises(ConfigError, match=r"no option 'scenario' .*did you mean 'scenarios'"):
        VerifyOptions.build(scenario=["overlap"])


def test_the_plugin_takes_the_app_alone_positionally_so_every_option_name_is_free() -> None:
    """`verify_hang(app, target="api.toml")` names the target file, never the app:
    the app is positional-only, then an optional VerifyOptions, then the options."""
    for function in (testing.verify_hang, testing.averify_hang):
        parameters = list(inspect.signature(function).parameters.values())
        assert parameters[0].kind is inspect.Parameter.POSITIONAL_ONLY
        assert parameters[1].name == "options"
        assert parameters[-1].kind is inspect.Parameter.VAR_KEYWORD
        assert not {p.name for p in parameters[1:-1]} & {o.name for o in OPTIONS}


@pytest.mark.parametrize("defined", OPTIONS, ids=lambda o: o.name)
def test_each_flag_and_default_of_the_command_is_the_definitions(defined: object) -> None:
    """Each CLI option has the defined flags and the defined default (repeatable ones start
    empty), and its help where the definition has one."""
    assert isinstance(defined, type(OPTIONS[0]))
    built = cli_options()[defined.name]
    flags = [*built.opts, *built.secondary_opts]
    expected = [f for spelling in defined.flags for f in spelling.split("/")]
    assert sorted(flags) == sorted(expected)
    if defined.repeatable:
        assert built.multiple and defined.default == ()
    else:
        assert built.default == defined.default
    if defined.help is not None:
        assert built.help == defined.help


def test_a_setting_given_to_the_plugin_resolves_as_the_flag_does(tmp_path: Path) -> None:
    """The same options prepare the same run: a target file and headers through keywords
    give the Spec the command line would (the file's dialect and session, the headers)."""
    target = ROOT / "tests" / "peers" / "custom_api.toml"
    by_keyword = VerifyOptions.build(
        target=str(target), headers={"X-Team": "a"}, api_key="k", expect="independent"
    ).prepare(served="http://127.0.0.1:9")
    by_flags = VerifyOptions.build(
        **{name: getattr(by_keyword.options, name) for name in ("target", "api_key", "expect")},
        headers=["X-Team: a"],
        urls=["http://127.0.0.1:9"],
    ).prepare()
    assert by_keyword.plan == by_flags.plan
    differing = dataclasses.replace(by_flags.spec, dialect=by_keyword.spec.dialect)
    assert by_keyword.spec == differing  # a dialect read twice is two equal objects
    assert repr(by_keyword.spec.dialect) == repr(by_flags.spec.dialect)
    assert by_keyword.spec.dialect.path == "/api/chat"
    assert by_keyword.spec.headers == (("X-Team", "a"),)
    assert str(by_keyword.spec.session_in) == "body:conversation_id"
    assert by_keyword.plan.strict is False


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("X-Team", "write it as 'Name: value'"),
        (": v", "write it as 'Name: value'"),
        ("Bad Name: v", "is not a valid header name"),
        ("Host: example.com", "verify-hang writes this header itself"),
        ("Content-Length: 3", "verify-hang writes this header itself"),
    ],
)
def test_a_header_that_cannot_go_on_the_wire_is_a_usage_error(header: str, message: str) -> None:
    """`--header` is checked before anything starts; the message names the flag."""
    with pytest.raises(ConfigError, match=f"--header .*{message}"):
        VerifyOptions.build(headers=[header]).prepare(served="http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"engine_metrics": "localhost:8080"}, "--engine-metrics takes the engine's metrics URL"),
        ({"engine_metrics": "ftp://e/metrics"}, "--engine-metrics takes the engine's metrics URL"),
        ({"busy_gauge": "requests processing"}, "--busy-gauge takes a Prometheus metric name"),
        ({"work_stop_bound": 0.0}, "--work-stop-bound must be > 0"),
        ({"max_tokens": 0}, "--max-tokens must be 1..100000"),
    ],
)
def test_the_engine_options_are_checked_before_anything_starts(
    values: dict[str, object], message: str
) -> None:
    """A metrics URL that is no URL, a gauge that is no metric name, a bound or a token cap
    that cannot work: a usage error naming the flag, before any request."""
    with pytest.raises(ConfigError, match=message):
        VerifyOptions.build(**values).prepare(served="http://127.0.0.1:9")


def test_the_work_stop_bound_defaults_to_the_cancel_bound_plus_a_second() -> None:
    """--work-stop-bound's default follows --cancel-wait: the cancel bound (+ 0.5 s) and
    1 s for the engine to reach its next token; given, it is taken as it is."""
    plan = VerifyOptions.build().prepare(served="http://127.0.0.1:9").plan
    assert plan.work_stop_s == 2.0 + 0.5 + 1.0
    plan = VerifyOptions.build(cancel_wait=1.0).prepare(served="http://127.0.0.1:9").plan
    assert plan.work_stop_s == 1.0 + 0.5 + 1.0
    plan = VerifyOptions.build(work_stop_bound=6.0).prepare(served="http://127.0.0.1:9").plan
    assert plan.work_stop_s == 6.0
