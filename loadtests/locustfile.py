"""A chat-session user for locust: it streams answers and interrupts itself, as people do.

Each user keeps its own session (`X-Session-Id`, or where `--session-in` says), sends a
prompt, reads the SSE stream, and with `--interrupt-rate` sends a new prompt into the same
session while the answer is still streaming (from a second greenlet, on a second
connection), drops the connection mid-stream (`--disconnect-rate`), or reloads: drops it
and resumes the answer with `Last-Event-ID` (`--reload-rate`). The server is
spoken to through `jarvis_cli.chatapi`: `--dialect openai|anthropic` or `--target
FILE.toml`, so every verdict reads the wire as that API defines it, not jarvis's extensions.
With `--urls A,B` (several servers sharing one registry, e.g. a fleet's hosts) a user's
prompts take turns over them, so one session's overlapping prompts land on different servers.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000        # web UI
    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless -u 50 -r 10 -t 60s
    locust -f loadtests/locustfile.py --host ... --headless -u 50 -t 2m --shape spike
    locust -f loadtests/locustfile.py --host http://127.0.0.1:9999 --dialect anthropic
    locust -f loadtests/locustfile.py --urls http://127.0.0.1:8001,http://127.0.0.1:8002
    LOCUST_HOST=http://127.0.0.1:8000 LOCUST_CONVERSATIONS=5 python loadtests/locustfile.py

The last line runs one user with `run_single_user` (for a debugger) and prints
every request. Metrics are request entries of type `SSE` (docs/swarm.md):
`stream` (one per stream; its failures are the verdicts: Hang, StaleChunk,
WrongText, HTTPError, BrokenStream), `ttft`, `chunk-gap`, `itl`,
`itl-estimated`, `full-stream` and `interrupt-ttft`, all in milliseconds,
`text-checked` (one per stream whose text was checked: only a deterministic
model's can be), `tokens-reported` / `tokens-estimated` (one per stream
with text, its tokens as the content size; `jarvis_cli/swarm/itl.py` says how
tokens are counted and ITL is counted per token), and `resume` (one per
reload: from the reconnect to the first resumed event; its failures: ResumeGap, a gap
or a duplicate in the event ids across the cut; NoResume, a server that cannot resume:
events without ids, or 404, 405 or 501 at the resume endpoint).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import gevent
from locust import FastHttpUser, LoadTestShape, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import FastResponse
from locust.env import Environment
from locust.exception import StopUser

try:
    from jarvis.synthetic import expected_text
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from jarvis.synthetic import expected_text
import sse_reader  # beside this file: locust puts the locustfile's folder on sys.path

from jarvis.exceptions import ConfigError
from jarvis_cli.chatapi import ChatRequest, Dialect, Piece, SessionIn, SSEEvent
from jarvis_cli.chatapi.resolve import ChatAPI, chat_api
from jarvis_cli.swarm.itl import Pace

#: The embedded model's name: its text is known in advance, so every token is checked.
SYNTHETIC_MODEL = "jarvis-synthetic"
#: Tokens asked for per answer (`--max-tokens`): the synthetic model's long answers.
MAX_TOKENS = 400
#: A long answer: still streaming when the interrupting prompt lands.
LONG_PROMPTS = (
    "Long essay about quantum computing",
    "Tell me a long story about a lighthouse keeper",
    "Explain in detail how TCP congestion control works",
)
MEDIUM_PROMPTS = (
    "Summarise the plot of a novel you like, briefly please.",
    "Give me three ideas for a weekend trip near the mountains.",
)
SHORT_PROMPTS = ("What is 2+2?", "Who wrote Hamlet?", "Is it raining in Paris?")
#: Seconds after the first prompt is sent before the interrupting one is.
INTERRUPT_DELAY_S = (0.05, 0.8)
#: An interruption spike (`--shape spike`): each conversation is interrupted this many times.
STORM_INTERRUPTS = 3
#: The spike's window, as shares of the run time.
SPIKE_WINDOW = (0.4, 0.6)
#: `--shape ramp` reaches its user count at this share of the run time.
RAMP_SHARE = 0.8
#: First-answer times kept per session: more than any interruption chain in flight.
KEEP_FIRSTS = 8
#: Run time assumed by the shapes when locust has none (`-t`).
DEFAULT_RUN_TIME_S = 60.0

# The request names, read back from locust's CSV by `jarvis swarm` (jarvis_cli/swarm/thresholds.py).
SSE = "SSE"
STREAM = "stream"
TTFT = "ttft"
CHUNK_GAP = "chunk-gap"
ITL = "itl"
ITL_ESTIMATED = "itl-estimated"
FULL_STREAM = "full-stream"
INTERRUPT_TTFT = "interrupt-ttft"
TEXT_CHECKED = "text-checked"
RESUME = "resume"
#: Where a reload resumes its answer (jarvis serve --resume-ttl): `{id}` is the stream id.
RESUME_PATH = "/v1/streams/{id}"
#: A reloading user leaves after this many content chunks (at random in the range).
RELOAD_AFTER = (2, 5)
#: The resume endpoint's answers that say the server does not resume (no such route, or
#: resume off: jarvis serve without --resume-ttl answers 404), as verify-hang reads them.
NOT_RESUMABLE = (404, 405, 501)
TOKENS_REPORTED = "tokens-reported"
TOKENS_ESTIMATED = "tokens-estimated"
#: The locustfile's usage errors (a bad --target, --dialect or --session-in) exit so.
USAGE_EXIT = 2


class StreamFailure(Exception):  # noqa: N818 - the subclasses name the kinds
    """A stream broke a promise; the class name is the failure's kind in locust's reports.

    Messages are constant per kind, so locust groups them into one failures row."""


class Hang(StreamFailure):
    pass


class StaleChunk(StreamFailure):
    pass


class WrongText(StreamFailure):
    pass


class HTTPError(StreamFailure):
    pass


class BrokenStream(StreamFailure):
    pass


class ResumeGap(StreamFailure):
    pass


class NoResume(StreamFailure):
    pass


@events.init_command_line_parser.add_listener
def _arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--interrupt-rate",
        type=float,
        default=0.3,
        env_var="LOCUST_INTERRUPT_RATE",
        help="Share of conversations interrupted by a new prompt mid-stream.",
    )
    parser.add_argument(
        "--disconnect-rate",
        type=float,
        default=0.05,
        env_var="LOCUST_DISCONNECT_RATE",
        help="Share of conversations whose client drops the connection mid-stream.",
    )
    parser.add_argument(
        "--reload-rate",
        type=float,
        default=0.0,
        env_var="LOCUST_RELOAD_RATE",
        help="Share of conversations whose client reloads mid-answer: drops the connection "
        "and resumes with Last-Event-ID at GET /v1/streams/{id} (the server's resume).",
    )
    parser.add_argument(
        "--hang-deadline",
        type=float,
        default=5.0,
        env_var="LOCUST_HANG_DEADLINE",
        help="Seconds without a byte that make a stream a Hang.",
    )
    parser.add_argument(
        "--stale-grace-ms",
        type=float,
        default=200.0,
        env_var="LOCUST_STALE_GRACE_MS",
        help="A superseded stream's chunk read this long after its successor's "
        "first is a StaleChunk (the margin absorbs greenlet scheduling).",
    )
    parser.add_argument(
        "--overlap",
        choices=("supersede", "independent"),
        default="supersede",
        env_var="LOCUST_OVERLAP",
        help="supersede: a new prompt ends the session's previous stream. "
        "independent: they may run side by side (no StaleChunk check).",
    )
    parser.add_argument(
        "--dialect",
        choices=("openai", "anthropic"),
        default=None,
        env_var="LOCUST_DIALECT",
        help="The server's chat API: openai (/v1/chat/completions) or anthropic "
        "(/v1/messages). Default: openai, or what --target describes.",
    )
    parser.add_argument(
        "--session-in",
        default=None,
        env_var="LOCUST_SESSION_IN",
        help="Where the session id travels: header:NAME, body:DOTTED.PATH, query:NAME or "
        "cookie:NAME. Default: header:X-Session-Id, or the target file's session.",
    )
    parser.add_argument(
        "--target",
        default=None,
        env_var="LOCUST_TARGET",
        help="A TOML file describing any other chat API (docs/swarm.md); "
        "--dialect and --session-in override what it says.",
    )
    parser.add_argument(
        "--urls",
        default=None,
        env_var="LOCUST_URLS",
        help="Several servers (base URLs, comma-separated) sharing one session registry: "
        "each user's prompts take turns over them. Default: --host alone.",
    )
    parser.add_argument(
        "--think-time",
        type=float,
        default=0.5,
        env_var="LOCUST_THINK_TIME",
        help="Mean seconds a user waits between conversations.",
    )
    parser.add_argument(
        "--prompt-mix",
        choices=("mixed", "long", "short"),
        default="mixed",
        env_var="LOCUST_PROMPT_MIX",
        help="Which prompts users send.",
    )
    parser.add_argument(
        "--shape",
        choices=("steady", "ramp", "spike"),
        default="steady",
        env_var="LOCUST_SHAPE",
        help="steady: -u users; ramp: 0 to -u over 80%% of -t; spike: -u users, "
        "then 1.5x users interrupting themselves 3 times each, from 40%% to 60%% of -t.",
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=MAX_TOKENS,
        env_var="LOCUST_MAX_TOKENS",
        help="Tokens asked for per answer (a slow engine wants few).",
    )
    parser.add_argument(
        "--usage",
        choices=("ask", "off"),
        default="ask",
        env_var="LOCUST_USAGE",
        help="ask: OpenAI requests carry stream_options.include_usage, so the server "
        "reports each answer's tokens and ITL is counted per token from it. off: for a "
        "server that refuses the field (tokens are then estimated from the text).",
    )
    parser.add_argument(
        "--conversations",
        type=int,
        default=0,
        env_var="LOCUST_CONVERSATIONS",
        help="Stop each user after this many conversations (0: never).",
        include_in_web_ui=False,
    )


@functools.cache
def speaker(
    target: str | None, dialect: str | None, session_in: str | None, urls: str | None = None
) -> ChatAPI:
    """Where and how to speak to the server, resolved once per process by the one
    implementation `jarvis swarm` and verify-hang use (flags over the target file over
    the defaults); a bad value raises ConfigError naming the key."""
    listed = [u for u in (urls or "").replace(",", " ").split() if u]
    return chat_api(listed, target=target, dialect=dialect, session_in=session_in)


@dataclass(frozen=True, slots=True)
class Settings:
    """The run's options (custom locust arguments, or their environment variables)."""

    interrupt_rate: float = 0.3
    disconnect_rate: float = 0.05
    reload_rate: float = 0.0
    hang_deadline: float = 5.0
    stale_grace_s: float = 0.2
    supersede: bool = True
    think_time: float = 0.5
    prompt_mix: str = "mixed"
    shape: str = "steady"
    conversations: int = 0
    max_tokens: int = MAX_TOKENS
    ask_usage: bool = True
    run_time: float = DEFAULT_RUN_TIME_S
    dialect: Dialect = field(default_factory=lambda: speaker(None, None, None).dialect)
    session_in: SessionIn = field(default_factory=lambda: speaker(None, None, None).session_in)
    #: `--urls`: the servers a user's prompts take turns over; () is --host alone.
    urls: tuple[str, ...] = ()

    @classmethod
    def of(cls, environment: Environment) -> Settings:
        o = environment.parsed_options
        if o is None:
            return cls()
        chosen = speaker(o.target, o.dialect, o.session_in, o.urls)
        if o.max_tokens < 1:
            raise ConfigError(f"--max-tokens must be at least 1, not {o.max_tokens}")
        return cls(
            interrupt_rate=o.interrupt_rate,
            disconnect_rate=o.disconnect_rate,
            reload_rate=o.reload_rate,
            hang_deadline=o.hang_deadline,
            stale_grace_s=o.stale_grace_ms / 1000,
            supersede=o.overlap == "supersede",
            think_time=o.think_time,
            prompt_mix=o.prompt_mix,
            shape=o.shape,
            conversations=o.conversations,
            max_tokens=o.max_tokens,
            ask_usage=o.usage == "ask",
            run_time=float(getattr(o, "run_time", None) or DEFAULT_RUN_TIME_S),
            dialect=chosen.dialect,
            session_in=chosen.session_in,
            # Only --urls spreads the prompts: a target file's url stands for --host.
            urls=tuple(u.rstrip("/") for u in chosen.urls) if o.urls else (),
        )


@dataclass(slots=True)
class _Process:
    """Per-process state shared by the users of one locust process (one worker)."""

    started_at: float = field(default_factory=time.monotonic)
    model: str | None = None
    synthetic: bool = False
    probed: bool = False


_process = _Process()


@events.init.add_listener
def _on_init(environment: Environment, **_: Any) -> None:
    """A bad --target, --dialect or --session-in is a usage error before any user starts,
    named on stderr (no traceback), as `jarvis swarm` names it."""
    try:
        Settings.of(environment)
    except ConfigError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(USAGE_EXIT)


@events.test_start.add_listener
def _on_test_start(**_: Any) -> None:
    _process.started_at = time.monotonic()  # the spike window counts from here, on every worker


@dataclass(eq=False, slots=True)
class Stream:
    """One streamed answer, as this client saw it."""

    prompt: str
    seq: int
    sent_at: float = field(default_factory=time.monotonic)
    stream_id: str | None = None
    first_at: float | None = None
    #: The content chunks' arrivals and sizes: the per-chunk gap and the per-token ITL.
    pace: Pace = field(default_factory=Pace)
    #: The tokens the server said it generated (its usage), if it said.
    tokens: int | None = None
    parts: list[str] = field(default_factory=list)
    #: The last finish reason the server gave, and whether it was a natural end.
    finish: str | None = None
    natural: bool = False
    #: jarvis's own extension, read only when present.
    end_reason: str | None = None
    #: The dialect's end marker arrived (`[DONE]`, `message_stop`, a target's `end`).
    done: bool = False
    #: An error event ended the stream.
    errored: bool = False
    ended: bool = False
    nbytes: int = 0
    #: The SSE id of every event read whole ("" for one without), for a resume.
    event_ids: list[str] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        """The model finished on its own and the server said the stream is over: a natural
        finish then the end marker (for a target file, its end marker), or jarvis's own
        `end_reason=completed`. Any server can be judged by the first."""
        return (self.natural and self.done) or self.end_reason == "completed"

    @property
    def over(self) -> bool:
        return self.done or self.errored


@dataclass(slots=True)
class Session:
    """A user's session: its streams' order and when each first answered."""

    id: str
    next_seq: int = 0
    #: (seq, when its first content arrived), in arrival order.
    firsts: list[tuple[int, float]] = field(default_factory=list)
    #: Prompts sent: with several URLs, the next one goes to `urls[turn % len(urls)]`.
    turn: int = 0

    def new_stream(self, prompt: str) -> Stream:
        self.next_seq += 1
        return Stream(prompt, self.next_seq)

    def url_for(self, urls: tuple[str, ...]) -> str:
        """The base URL of this session's next prompt: with several, they take turns
        prompt by prompt (as verify-hang's sessions do), so an interrupting prompt lands
        on another server than the stream it interrupts. "" with none: locust's --host."""
        if not urls:
            return ""
        url = urls[self.turn % len(urls)]
        self.turn += 1
        return url

    def successor_first_at(self, stream: Stream) -> float | None:
        """When a newer stream of this session first answered, if one has."""
        return next((at for seq, at in self.firsts if seq > stream.seq), None)


def _abort(response: FastResponse) -> None:
    """Close the connection under a response now (mid-stream), never returning it to the pool:
    a half-read connection reused for the next request would read the old stream's bytes."""
    raw: Any = response._response
    sock, pool = raw._sock, getattr(raw, "_pool", None)
    raw._sock = None
    if hasattr(raw, "_pool"):
        raw._pool = None
    if sock is None:
        return
    if pool is not None:
        pool.release_socket(sock)
    else:
        sock.close()


def _seam(before: list[str], after: list[str]) -> StreamFailure | None:
    """A gap or a duplicate in numbered event ids across a cut and after it (ids that
    are not numbers: only a repeat shows)."""
    ids = before + after
    if all(i.isdigit() for i in ids):
        numbers = [int(i) for i in ids]
        if any(b != a + 1 for a, b in itertools.pairwise(numbers)):
            return ResumeGap("a gap or a duplicate in the event ids across a reload")
        return None
    if set(before) & set(after):
        return ResumeGap("a gap or a duplicate in the event ids across a reload")
    return None


def _is_timeout(exc: BaseException | None) -> bool:
    return isinstance(exc, TimeoutError | gevent.Timeout) or "timed out" in str(exc).lower()


class ChatUser(FastHttpUser):
    """A person chatting: prompt, read, sometimes interrupt themselves, sometimes leave."""

    host = os.environ.get("LOCUST_HOST") or None
    concurrency = 8  # connections per user: the interrupting prompts run beside the first

    def __init__(self, environment: Environment) -> None:
        self.settings = Settings.of(environment)
        # Request + headers bound; every body read is bound again by the same deadline.
        self.network_timeout = self.connection_timeout = self.settings.hang_deadline
        if self.host is None and self.settings.urls:
            self.host = self.settings.urls[0]  # --urls alone: the model probe asks the first
        super().__init__(environment)
        # Sessions start their turns at different URLs, so the first prompts spread too.
        urls = self.settings.urls
        self.session = Session(
            f"swarm-{uuid.uuid4().hex[:16]}", turn=random.randrange(len(urls)) if urls else 0
        )
        self.conversations = 0

    def wait_time(self) -> float:
        return random.uniform(0, 2 * self.settings.think_time)

    def on_start(self) -> None:
        if not _process.probed:
            _process.probed = True
            self._probe_model()

    def _probe_model(self) -> None:
        """The model to ask for, and whether its text is known (the embedded synthetic model).

        The probe is not a stream and never a failure: a server without a model list
        (a 404, a target file's API) is fine; the requests then name no model."""
        path = self.settings.dialect.models_path
        if path is None:
            return
        with self.client.get(path, name=path, catch_response=True) as response:
            try:
                data = response.json().get("data") or []
                _process.model = str(data[0]["id"]) if data else None
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                _process.model = None
            response.success()
        _process.synthetic = _process.model == SYNTHETIC_MODEL

    @task
    def conversation(self) -> None:
        s = self.settings
        if s.conversations and self.conversations >= s.conversations:
            raise StopUser
        self.conversations += 1
        storm = self._in_spike()
        interrupts = STORM_INTERRUPTS if storm else int(random.random() < s.interrupt_rate)
        drop_after = None
        reload = not interrupts and random.random() < s.reload_rate
        if reload:
            drop_after = random.randint(*RELOAD_AFTER)
        elif not interrupts and random.random() < s.disconnect_rate:
            drop_after = random.randint(1, 5)
        first = self.session.new_stream(self._prompt(long=interrupts > 0 or reload))
        helper = gevent.spawn(self._interrupt, first, interrupts) if interrupts else None
        self._stream(first, drop_after=drop_after)
        if reload:
            self._resume(first)
        if helper is not None:
            helper.join(timeout=(interrupts + 2) * s.hang_deadline)
            helper.kill(block=True, timeout=1.0)

    def _prompt(self, *, long: bool) -> str:
        mix = self.settings.prompt_mix
        if long or mix == "long":
            return random.choice(LONG_PROMPTS)
        if mix == "short":
            return random.choice(SHORT_PROMPTS)
        return random.choice((*LONG_PROMPTS, *MEDIUM_PROMPTS, *SHORT_PROMPTS))

    def _in_spike(self) -> bool:
        if self.settings.shape != "spike":
            return False
        share = (time.monotonic() - _process.started_at) / self.settings.run_time
        return SPIKE_WINDOW[0] <= share < SPIKE_WINDOW[1]

    def _interrupt(self, first: Stream, count: int) -> None:
        """Send `count` prompts, each into the stream before it, from beside the reader."""
        previous, readers = first, []
        for i in range(count):
            gevent.sleep(random.uniform(*INTERRUPT_DELAY_S))
            stream = self.session.new_stream(self._prompt(long=i < count - 1))
            readers.append(gevent.spawn(self._stream, stream, interrupting=not previous.ended))
            previous = stream
        gevent.joinall(readers, timeout=(count + 1) * self.settings.hang_deadline)
        for reader in readers:
            reader.kill(block=True, timeout=1.0)

    def _stream(
        self, stream: Stream, *, interrupting: bool = False, drop_after: int | None = None
    ) -> None:
        """Send one prompt, read its SSE stream to the end, and report what it did."""
        s = self.settings
        request = s.dialect.request(
            stream.prompt, session=self.session.id, session_in=s.session_in,
            model=_process.model or "", max_tokens=s.max_tokens,
        )  # fmt: skip
        if not _process.model and request.body.get("model") == "":
            del request.body["model"]  # no model list: let the server choose its own
        if s.ask_usage and s.dialect.name == "openai":
            # The server's token count: per-token ITL from it, not from a text estimate.
            request.body["stream_options"] = {"include_usage": True}
        headers = request.all_headers()
        headers.update({"Accept": "text/event-stream", "Content-Type": "application/json"})
        stream.sent_at = time.monotonic()
        base = self.session.url_for(s.urls)  # absolute with --urls; else relative to --host
        response = self.client.request(
            request.method, base + request.target, data=request.payload(), headers=headers,
            stream=True, name=request.path,
        )  # fmt: skip
        failure: StreamFailure | None = None
        error = getattr(response, "error", None)
        if error is not None or not 200 <= (response.status_code or 0) < 300:
            failure = (
                Hang("no response within the hang deadline")
                if _is_timeout(error)
                else HTTPError("an HTTP error or a refused connection")
            )
        else:
            stream.stream_id = response.headers.get("x-stream-id")
            try:
                failure = self._read(response, stream, drop_after)
            finally:
                _abort(response)  # a no-op once the body was read to its end
        stream.ended = True
        self._report(stream, failure, interrupting=interrupting, dropped=drop_after is not None)

    def _read(
        self, response: FastResponse, stream: Stream, drop_after: int | None
    ) -> StreamFailure | None:
        """Read SSE events until the end marker, an error event, a failure, or `drop_after`
        content chunks. Bytes are fed to the spec decoder as they arrive (sse_reader.py)."""
        raw: Any = response._response

        def read() -> bytes:
            chunk = sse_reader.available(raw)
            stream.nbytes += len(chunk)
            return chunk

        try:
            for event in sse_reader.events(read):
                stream.event_ids.append(event.id)
                failure = self._absorb(stream, event, time.monotonic())
                if failure is not None:
                    return failure
                if stream.over:
                    return None
                if drop_after is not None and len(stream.parts) >= drop_after:
                    return None  # the caller closes the connection: a user who left
        except Exception as exc:  # any transport error ends the stream
            if _is_timeout(exc):
                return Hang(f"no byte within {self.settings.hang_deadline:g} s")
            return self._closed(stream, "connection lost mid-stream")
        return self._closed(stream, "closed before the end marker")

    def _absorb(self, stream: Stream, event: SSEEvent, now: float) -> StreamFailure | None:
        """Fold one SSE event, as the dialect reads it, into `stream`: its id, text,
        timings, finish reason and end marker."""
        piece = self.settings.dialect.read(event)
        if piece is None:
            return None
        failure = self._fold(stream, piece)
        if failure is not None or not piece.text:
            return failure  # an ending or an empty delta is never stale, whenever it comes
        self._content(stream, piece.text, now)
        if self._superseded(stream):
            newer = self.session.successor_first_at(stream)
            if newer is not None and now - newer > self.settings.stale_grace_s:
                return StaleChunk("a superseded stream's chunk after its successor's first")
        return None

    def _fold(self, stream: Stream, piece: Piece) -> StreamFailure | None:
        """What a piece says about the stream's identity and its end."""
        if piece.malformed:
            return BrokenStream("an event the dialect cannot read")
        if piece.error is not None:
            stream.errored = True
            return None if self._superseded(stream) else BrokenStream("an error event")
        if piece.stream_id is not None:
            if stream.stream_id is None:
                stream.stream_id = piece.stream_id
            elif piece.stream_id != stream.stream_id:
                return StaleChunk("a chunk of another stream on this stream's connection")
        if piece.end_reason is not None:
            stream.end_reason = piece.end_reason
        if piece.tokens is not None:
            stream.tokens = piece.tokens
        if piece.finish is not None:
            stream.finish, stream.natural = piece.finish, piece.natural
        elif piece.natural:
            stream.natural = True  # a target file's end marker is itself the natural end
        if piece.done:
            stream.done = True
        return None

    def _resume(self, cut: Stream) -> None:
        """A reload: ask for the rest of `cut` after the last event it read whole (on the
        session's next URL: another server of a fleet), and report the reconnect to the
        first resumed event as `resume`. The ids must run on across the cut (when they
        are numbers), and a deterministic model's text must be whole."""
        s = self.settings
        started = time.monotonic()
        if not cut.event_ids or not all(cut.event_ids) or cut.stream_id is None:
            self._fire(RESUME, 0.0, exc=NoResume("the events carry no ids or no stream id"))
            return
        request = ChatRequest(RESUME_PATH.replace("{id}", quote(cut.stream_id, safe="")), {})
        s.session_in.place(self.session.id, headers=request.headers, body={},
                           params=request.params, cookies=request.cookies)  # fmt: skip
        headers = {**request.all_headers(), "Accept": "text/event-stream",
                   "Last-Event-ID": cut.event_ids[-1]}  # fmt: skip
        base = self.session.url_for(s.urls)
        response = self.client.request(
            "GET", base + request.target, headers=headers, stream=True, name=RESUME_PATH
        )
        if (
            getattr(response, "error", None) is not None
            or not 200 <= (response.status_code or 0) < 300
        ):
            status = response.status_code or 0
            refused: StreamFailure
            if status in NOT_RESUMABLE:
                refused = NoResume(f"the server does not resume (HTTP {status} at {RESUME_PATH})")
            elif status:
                refused = HTTPError("the resume was refused")
            else:
                refused = HTTPError("no answer to the resume")
            self._fire(RESUME, time.monotonic() - started, exc=refused)
            return
        rest = Stream(cut.prompt, cut.seq, sent_at=started)
        first_at, failure = None, None
        raw: Any = response._response
        try:
            for event in sse_reader.events(lambda: sse_reader.available(raw)):
                first_at = first_at or time.monotonic()
                rest.event_ids.append(event.id)
                piece = s.dialect.read(event)
                if piece is not None:
                    rest.parts.append(piece.text)
                    failure = failure or self._fold(rest, piece)
                if rest.done:
                    break
        except Exception as exc:  # any transport error ends the resumed stream
            failure = Hang("no byte") if _is_timeout(exc) else BrokenStream("resume cut")
        finally:
            _abort(response)
        failure = failure or _seam(cut.event_ids, rest.event_ids)
        if failure is None and _process.synthetic and rest.completed:
            whole = "".join(cut.parts + rest.parts)
            if whole != expected_text(cut.prompt, s.max_tokens):
                failure = WrongText("the text read across a reload is not the model's")
        self._fire(RESUME, (first_at or time.monotonic()) - started, exc=failure)

    def _superseded(self, stream: Stream) -> bool:
        """A newer prompt of this session was sent, and it is to end this stream."""
        return self.settings.supersede and self.session.next_seq > stream.seq

    def _content(self, stream: Stream, content: str, now: float) -> None:
        if stream.first_at is None:
            stream.first_at = now
            firsts = self.session.firsts
            firsts.append((stream.seq, now))
            if len(firsts) > KEEP_FIRSTS:  # only the session's last few streams can overlap
                del firsts[0]
        stream.pace.chunk(content, now)
        stream.parts.append(content)

    def _closed(self, stream: Stream, what: str) -> StreamFailure | None:
        """A connection closed without the end marker: fine after a finish reason of any
        value, or for a superseded stream (which may end any way: a fenced stream may not
        write another byte); else broken. Such a stream never counts as completed."""
        if stream.finish is not None or stream.end_reason or self._superseded(stream):
            return None
        return BrokenStream(what)

    def _report(
        self, stream: Stream, failure: StreamFailure | None, *, interrupting: bool, dropped: bool
    ) -> None:
        now = time.monotonic()
        if failure is None and _process.synthetic:
            # Only a deterministic model's text is known in advance; on any other server
            # the check is off, and `jarvis swarm` says so rather than count it as passed.
            failure = self._check_text(stream)
            self._fire(TEXT_CHECKED, 0.0)
        if stream.first_at is not None:
            self._fire(TTFT, stream.first_at - stream.sent_at)
            if interrupting:
                self._fire(INTERRUPT_TTFT, stream.first_at - stream.sent_at)
        self._pace(stream)
        if failure is None and stream.completed and not dropped:
            self._fire(FULL_STREAM, now - stream.sent_at, length=stream.nbytes)
        self._fire(STREAM, now - stream.sent_at, length=stream.nbytes, exc=failure)

    def _pace(self, stream: Stream) -> None:
        """The stream's per-chunk gap, per-token ITL and tokens. The server's token count
        is believed for a completed stream only (a cut one's may count tokens never sent);
        ITL from estimated tokens goes under a name of its own, never mixed with it."""
        pace = stream.pace
        if stream.tokens is not None and stream.completed:
            pace.count(stream.tokens)
        if not pace.chunks:
            return
        gap, itl = pace.chunk_gap, pace.itl
        if gap is not None:
            self._fire(CHUNK_GAP, gap)
        if itl is not None:
            self._fire(ITL_ESTIMATED if pace.estimated else ITL, itl)
        tokens = TOKENS_ESTIMATED if pace.estimated else TOKENS_REPORTED
        self._fire(tokens, 0.0, length=round(pace.tokens))

    def _check_text(self, stream: Stream) -> StreamFailure | None:
        text = "".join(stream.parts)
        expected = expected_text(stream.prompt, self.settings.max_tokens)
        if stream.completed:
            return None if text == expected else WrongText("the completed text is not the model's")
        if not expected.startswith(text):
            return WrongText("the text so far is not a prefix of the model's")
        return None

    def _fire(
        self, name: str, seconds: float, *, length: int = 0, exc: Exception | None = None
    ) -> None:
        self.environment.events.request.fire(
            request_type=SSE, name=name, response_time=seconds * 1000, response_length=length,
            exception=exc, context={"session": self.session.id},
        )  # fmt: skip


class SwarmShape(LoadTestShape):
    """`--shape steady|ramp|spike`, sized by the usual -u, -r and -t (run time)."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        options = self.runner.environment.parsed_options
        users = int(getattr(options, "num_users", None) or 1)
        rate = float(getattr(options, "spawn_rate", None) or 1)
        limit = getattr(options, "run_time", None)
        run_time = float(limit or DEFAULT_RUN_TIME_S)
        shape = getattr(options, "shape", "steady")
        now = self.get_run_time()
        if limit and now >= run_time:
            return None
        if shape == "ramp":
            return max(1, math.ceil(users * min(1.0, now / (run_time * RAMP_SHARE)))), rate
        if shape == "spike" and SPIKE_WINDOW[0] <= now / run_time < SPIKE_WINDOW[1]:
            return users + math.ceil(users / 2), float(max(rate, users))
        return users, rate


if __name__ == "__main__":
    from locust import run_single_user

    run_single_user(ChatUser, include_time=True, include_length=True)
