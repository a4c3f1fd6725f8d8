"""`jarvis swarm --find-max`: the search (doubling, then bisecting, bounded), the curve it
reports (terminal, JSON, markdown), its usage errors, and two real searches: one against
the embedded `jarvis serve` that finds a level and exits 0, one whose first level cannot
meet an impossible threshold and exits 1 saying so."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from jarvis_cli.exit_codes import ExitCode
from jarvis_cli.swarm.curve import Curve, Level
from jarvis_cli.swarm.findmax import MAX_BISECTIONS, Phase, Search, find_max
from jarvis_cli.swarm.thresholds import Thresholds

from .cli import run
from .conftest import ServerProcess
from .swarms import swarm

LIMITS = Thresholds(1000.0, 1500.0, 0.01, 1000.0)


def _search(start: int, ceiling: int, capacity: int) -> tuple[Search, list[int]]:
    """Run a search against a server that holds up to `capacity` users; the levels run."""
    search, ran = Search(start, ceiling), []
    while (users := search.next()) is not None:
        ran.append(users)
        search.record(users, users <= capacity)
    return search, ran


def test_the_search_doubles_until_a_level_fails_then_bisects() -> None:
    """5, 10, 20, 40 hold, 80 fails; then 60, 50, 45 until the gap is within 10%: the
    answer is the last level that held."""
    search, ran = _search(5, 160, 47)
    assert ran == [5, 10, 20, 40, 80, 60, 50, 45]
    assert (search.passed, search.failed, search.phase) == (45, 50, Phase.DONE)
    assert repr(search) == "<Search done passed=45 failed=50 bisections=3>"


def test_every_level_holding_stops_at_the_ceiling_even_off_the_doubling() -> None:
    """5, 10, 20, then the ceiling itself (not 40): the search never goes past it."""
    search, ran = _search(5, 30, 1000)
    assert ran == [5, 10, 20, 30]
    assert (search.passed, search.failed) == (30, None)


def test_a_first_level_that_fails_ends_the_search_with_nothing_held() -> None:
    search, ran = _search(8, 64, 3)
    assert ran == [8]
    assert (search.passed, search.failed, search.phase) == (None, 8, Phase.DONE)


@pytest.mark.parametrize(("start", "ceiling"), [(1, 1), (1, 1000), (3, 1000), (7, 100)])
def test_the_search_is_bounded_by_most_levels_whatever_the_capacity(
    start: int, ceiling: int
) -> None:
    """At most log2(ceiling/start) + 1 doublings and MAX_BISECTIONS bisections."""
    for capacity in range(0, ceiling + 2, max(1, ceiling // 50)):
        search, ran = _search(start, ceiling, capacity)
        assert len(ran) <= search.most_levels
        assert search.bisections <= MAX_BISECTIONS
        held = [u for u in ran if u <= capacity]
        assert search.passed == (max(held) if held else None)


def test_a_verdict_for_another_level_than_asked_is_refused() -> None:
    search = Search(2, 8)
    assert search.next() == 2
    with pytest.raises(ValueError, match="the level to run is 2"):
        search.record(4, True)
    with pytest.raises(ValueError, match="start <= ceiling"):
        Search(9, 8)


def _level(users: int, crossed: tuple[str, ...] = (), *, source: str = "server") -> Level:
    return Level(
        users=users, passed=not crossed, crossed=crossed, p99_ttft_ms=10.0 * users,
        p99_interrupt_ms=math.nan, fail_ratio=0.0, streams=10 * users, streams_per_s=users / 2,
        tokens_per_s=100.0 * users, p50_itl_ms=5.0, p50_chunk_gap_ms=70.0, itl_source=source,
        generator_bound=False, report_dir=f"r/users-{users:04d}",
    )  # fmt: skip


def test_find_max_runs_the_levels_the_search_asks_and_reports_progress() -> None:
    """The loop: each level run once, in order, its verdict fed back, progress per level."""
    seen: list[tuple[int, int]] = []

    async def level(users: int) -> Level:
        return _level(users, () if users <= 6 else ("--max-p99-ttft-ms",))

    levels = asyncio.run(find_max(Search(2, 16), level, lambda n, lv: seen.append((n, lv.users))))
    assert [lv.users for lv in levels] == [2, 4, 8, 6, 7]
    assert seen == [(1, 2), (2, 4), (3, 8), (4, 6), (5, 7)]


def test_the_curve_names_the_max_writes_json_and_markdown_and_renders(tmp_path: Path) -> None:
    """Rows sorted by users; the verdict names the max and what the next level crossed;
    JSON has no NaN (null instead); an estimated ITL is marked `est.`."""
    levels = [_level(4), _level(8, ("--max-p99-ttft-ms", "diagnose")), _level(6, source="estimate")]
    curve = Curve(levels, LIMITS, 4, 32, 10.0, "embedded server")
    assert curve.verdict() == (
        "max users meeting the thresholds: 6 (8 crossed --max-p99-ttft-ms, diagnose)"
    )
    data_path, md_path = curve.write(tmp_path)
    data = json.loads(data_path.read_text())
    assert data["max_users_meeting_thresholds"] == 6
    assert [lv["users"] for lv in data["levels"]] == [4, 6, 8]
    assert data["levels"][0]["p99_interrupt_ms"] is None
    assert data["thresholds"]["max_p99_ttft_ms"] == 1000.0
    markdown = md_path.read_text()
    assert "| 6 | ✔ | 60 ms | – | 0.00% | 3.0 | 600 | 5 ms est. | 70 ms |  |" in markdown
    assert "| 8 | ✘ |" in markdown
    console = Console(file=io.StringIO(), width=200)
    curve.render(console)
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "find-max: the curve" in shown
    assert "max users meeting the thresholds: 6" in shown


def test_a_curve_with_reloads_has_a_p99_resume_column_and_threshold(tmp_path: Path) -> None:
    """Levels whose users reloaded: the p99 resume shows in the markdown's columns, its
    threshold in the markdown's line and JSON, and the level's resumes in JSON; a curve
    without reloads has no such column."""
    reloading = [dataclasses.replace(_level(users), resumes=3 * users, p99_resume_ms=80.0 + users)
                 for users in (2, 4)]  # fmt: skip
    data_path, md_path = Curve(reloading, LIMITS, 2, 4, 5.0, "x").write(tmp_path)
    markdown = md_path.read_text()
    assert "| users | held | p99 TTFT | p99 interrupt | p99 resume | failed |" in markdown
    assert "| 4 | ✔ | 40 ms | – | 84 ms | 0.00% |" in markdown
    assert "p99 resume <= 1000 ms" in markdown
    data = json.loads(data_path.read_text())
    assert data["thresholds"]["max_p99_resume_ms"] == 1000.0
    assert [(lv["resumes"], lv["p99_resume_ms"]) for lv in data["levels"]] == [(6, 82), (12, 84)]
    plain = Curve([_level(2)], LIMITS, 2, 4, 5.0, "x").markdown()
    assert "p99 resume" not in plain


def test_a_curve_where_every_level_held_says_the_ceiling_bounds_it() -> None:
    curve = Curve([_level(2), _level(4)], LIMITS, 2, 4, 5.0, "x")
    assert "at least 4, the search's ceiling" in curve.verdict()
    assert curve.as_json()["hit_ceiling"] is True


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--start-users", "8", "--max-users", "4"),
         "--max-users (4) must be at least --start-users (8)"),
        (("--start-users", "0"), "--start-users must be at least 1"),
        (("--users", "10"), "--users is one swarm's; with --find-max give --start-users"),
        (("--run-time", "30s"), "--run-time is one swarm's; with --find-max give --level-time"),
        (("--level-time", "2s"), "--level-time must be at least 3s"),
        (("--level-time", "soon"), "--level-time takes a duration"),
        (("--shape", "spike"), "--find-max runs steady levels"),
        (("--max-tokens", "0"), "--max-tokens must be at least 1"),
        (("--usage", "maybe"), "--usage takes ask or off, not 'maybe'"),
    ],
)  # fmt: skip
def test_bad_find_max_flags_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    """Exit 2 with the message on stderr, before any swarm starts."""
    result = run("swarm", "--find-max", *args)
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


#: Generous: a healthy embedded server is far inside them with a few users.
GENEROUS = ("--max-p99-ttft-ms", "2000", "--max-p99-interrupt-ms", "3000",
            "--max-fail-ratio", "0.05", "--interrupt-rate", "0.5")  # fmt: skip


@pytest.mark.e2e
@pytest.mark.timeout(90)
def test_find_max_against_the_embedded_server_finds_a_level_and_exits_0(tmp_path: Path) -> None:
    """2 then 4 users, 3 s each, both hold: exit 0, the curve on stdout and in
    find-max.json/.md, each level's locust report and server log in its own folder, and
    per token the ITL is the model's 5 ms (200 tokens/s) while chunks come ~75 ms apart."""
    run_ = swarm(tmp_path, "--find-max", "--start-users", "2", "--max-users", "4",
                 "--level-time", "3s", *GENEROUS)  # fmt: skip
    assert run_.code == ExitCode.OK, run_.output
    assert "max users meeting the thresholds: at least 4" in run_.stdout
    assert "level 1: 2 users" in run_.stderr and "level 2: 4 users" in run_.stderr
    data = json.loads((run_.report_dir / "find-max.json").read_text())
    assert data["max_users_meeting_thresholds"] == 4
    assert [(lv["users"], lv["passed"]) for lv in data["levels"]] == [(2, True), (4, True)]
    assert "| 4 | ✔ |" in (run_.report_dir / "find-max.md").read_text()
    for users in (2, 4):
        folder = run_.report_dir / f"users-{users:04d}"
        assert (folder / "locust_stats.csv").is_file()
        assert "event=server_start" in (folder / "server.log").read_text()
    for level in data["levels"]:
        assert level["itl_source"] == "server"
        assert 3 <= level["p50_itl_ms"] <= 12, level
        assert level["p50_chunk_gap_ms"] >= 4 * level["p50_itl_ms"], level
        assert level["streams"] > 0 and level["tokens_per_s"] > 0


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_find_max_exits_1_naming_the_threshold_when_even_the_first_level_fails(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    """An impossible p99 TTFT (0.001 ms) against `jarvis serve --url`: the first level
    crosses it, the search stops there (no second level), exit 1 and a message saying
    what to change; the JSON records no level held."""
    server = server_factory()
    run_ = swarm(tmp_path, "--find-max", "--url", server.url, "--start-users", "2",
                 "--max-users", "16", "--level-time", "3s",
                 "--max-p99-ttft-ms", "0.001")  # fmt: skip
    assert run_.code == ExitCode.FAILURE, run_.output
    said = " ".join(run_.stdout.split())
    assert "no level met the thresholds: even 2 users crossed --max-p99-ttft-ms" in said
    assert "lower --start-users or loosen the thresholds" in said
    data = json.loads((run_.report_dir / "find-max.json").read_text())
    assert data["max_users_meeting_thresholds"] is None
    assert [lv["users"] for lv in data["levels"]] == [2]
    assert not (run_.report_dir / "users-0004").exists()
