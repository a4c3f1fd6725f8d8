// The jarvis chat page (docs/browser.md): one session per tab; sending while an answer
// streams interrupts it. The stream-id guard: the page keeps the current stream's id (the
// response's X-Stream-Id, which jarvis also puts in every chunk's `id`) and drops every chunk
// whose id is another, so an older stream never writes into the answer, even while its
// fetch is still being read (?abort=0). Resume (a server with --resume-ttl): the current
// stream's id, its last event id and the answer so far are kept per session in localStorage,
// so a reload picks the answer up where it was (GET /v1/streams/{id}, Last-Event-ID) and a
// second tab on the session follows it; Stop asks the server to stop it
// (POST /v1/streams/{id}/cancel). Plain JS, served as it is: no build step.
"use strict";

(() => {
  const CHAT_PATH = "/v1/chat/completions";
  const STREAMS_PATH = "/v1/streams/";
  const SESSION_KEY = "jarvis.session";
  const RESUME_KEY = "jarvis.stream."; // + session: {id, last, answer, done, resumable}
  const SESSION_RE = /^[A-Za-z0-9._:-]{1,128}$/; // what the server accepts in X-Session-Id
  const KEEP_STREAMS = 20; // the debug panel lists the newest streams only

  const params = new URLSearchParams(window.location.search);
  // ?abort=0: an interrupted fetch is not aborted and is read to its end, as when streams
  // share one channel; then only the stream-id guard keeps its chunks out of the answer.
  const abortOld = params.get("abort") !== "0";
  // ?guard=0: no stream-id guard, every chunk lands in the answer: the bug the guard fixes.
  const guardOn = params.get("guard") !== "0";

  const byId = (id) => document.getElementById(id);
  const ui = {
    form: byId("composer"),
    prompt: byId("prompt"),
    answer: byId("answer"),
    endReason: byId("end-reason"),
    error: byId("error"),
    dropped: byId("dropped"),
    streamId: byId("stream-id"),
    session: byId("session"),
    mode: byId("mode"),
    streams: byId("streams"),
    stop: byId("stop"),
  };

  const state = {
    seq: 0, // sends so far: only the latest send's response may set the current id
    currentId: null, // the current stream's id; null until its response arrives
    controller: null, // the latest fetch's AbortController
    answer: "",
    endReason: "",
    dropped: 0,
    streams: [], // one entry per send, for the debug panel
    known: new Set(), // stream ids this tab has shown: another tab's record of one is old news
    leaving: false, // the page is being unloaded (a reload): its record stays as it was
  };
  const session = tabSession();

  // One session per tab: sessionStorage lives as long as the tab, reloads included.
  // `?session=ID` joins a session (a second tab following the first one's answers).
  function tabSession() {
    let id = params.get("session");
    if (id && SESSION_RE.test(id)) {
      try {
        window.sessionStorage.setItem(SESSION_KEY, id);
      } catch (_) {
        // not kept: this page view only
      }
      return id;
    }
    try {
      id = window.sessionStorage.getItem(SESSION_KEY);
    } catch (_) {
      id = null; // storage disabled: a session for this page view only
    }
    if (!id || !SESSION_RE.test(id)) {
      // getRandomValues, not randomUUID: the latter needs a secure context (https or localhost).
      const bytes = new Uint8Array(12);
      window.crypto.getRandomValues(bytes);
      id = "tab-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      try {
        window.sessionStorage.setItem(SESSION_KEY, id);
      } catch (_) {
        // not kept: a reload starts a new session
      }
    }
    return id;
  }

  // Server-Sent Events as the spec reads them: lines end at CRLF, LF or CR (a CR at the end
  // of one read may be half of a CRLF), `data:` lines of one event are joined with LF, a
  // blank line dispatches, lines starting with ":" are comments.
  class SSEParser {
    constructor(onEvent) {
      this.onEvent = onEvent;
      this.buffer = "";
      this.data = [];
      this.type = "";
      this.lastId = ""; // the last event id, as the spec keeps it across events
    }

    feed(text) {
      this.buffer += text;
      const eol = /\r\n|\n|\r/g;
      let start = 0;
      let match;
      while ((match = eol.exec(this.buffer)) !== null) {
        if (match[0] === "\r" && eol.lastIndex === this.buffer.length) break; // wait for LF
        this.line(this.buffer.slice(start, match.index));
        start = eol.lastIndex;
      }
      this.buffer = this.buffer.slice(start);
    }

    end() {
      if (this.buffer.endsWith("\r")) this.line(this.buffer.slice(0, -1));
      this.buffer = ""; // an event without its blank line is discarded, as the spec says
    }

    line(line) {
      if (line === "") {
        if (this.data.length > 0) {
          this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastId });
        }
        this.data = [];
        this.type = "";
        return;
      }
      if (line.startsWith(":")) return;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") this.data.push(value);
      else if (field === "event") this.type = value;
      else if (field === "id" && !value.includes("\0")) this.lastId = value;
    }
  }

  function describe(err) {
    return err && err.message ? err.message : String(err);
  }

  function isAbort(err) {
    return Boolean(err) && err.name === "AbortError";
  }

  // How a chunk says its stream ended: jarvis's end_reason, else OpenAI's finish_reason.
  function endOf(chunk) {
    if (chunk.jarvis && typeof chunk.jarvis.end_reason === "string") return chunk.jarvis.end_reason;
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
    if (choice && typeof choice.finish_reason === "string") return choice.finish_reason;
    return "";
  }

  function contentOf(chunk) {
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
    const content = choice && choice.delta ? choice.delta.content : null;
    return typeof content === "string" ? content : "";
  }

  // -- rendering ----------------------------------------------------------------------------

  function renderAnswer() {
    ui.answer.textContent = state.answer;
  }

  function renderDropped() {
    ui.dropped.textContent = String(state.dropped);
  }

  function renderStatus() {
    ui.endReason.textContent = state.endReason;
    ui.streamId.textContent = state.currentId || "";
    ui.stop.hidden = !state.currentId || Boolean(state.endReason);
  }

  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = !message;
  }

  function renderStreams() {
    const items = state.streams.map((entry) => {
      const item = document.createElement("li");
      item.dataset.seq = String(entry.seq);
      const id = document.createElement("code");
      id.textContent = entry.id || (entry.end ? "(no stream id)" : "(waiting)");
      const end = document.createElement("span");
      end.className = "stream-end";
      end.dataset.testid = "stream-end";
      end.textContent = entry.end || "streaming";
      const prompt = document.createElement("span");
      prompt.className = "stream-prompt";
      prompt.textContent = entry.prompt.length > 40 ? entry.prompt.slice(0, 39) + "\u2026" : entry.prompt;
      item.append(`#${entry.seq} `, id, " ", end, " ", prompt);
      return item;
    });
    ui.streams.replaceChildren(...items);
  }

  // -- the resume record: the session's current stream, kept across reloads and tabs ----------

  function loadRecord() {
    try {
      const record = JSON.parse(window.localStorage.getItem(RESUME_KEY + session) || "null");
      if (record && typeof record.id === "string" && /^[0-9]*$/.test(String(record.last))) {
        return record;
      }
    } catch (_) {
      // storage disabled or garbled: nothing to resume
    }
    return null;
  }

  function saveRecord(record) {
    try {
      window.localStorage.setItem(RESUME_KEY + session, JSON.stringify(record));
    } catch (_) {
      // not kept: a reload starts empty
    }
  }

  // The latest send's stream moved on: keep where it is (its id, last event, answer), and
  // whether the server keeps its events (it said so with X-Resume-TTL).
  function remember(entry, eventId) {
    if (!isLatest(entry) || !entry.id || state.leaving) return;
    if (eventId) entry.last = eventId;
    saveRecord({
      id: entry.id,
      last: entry.last || "0",
      answer: state.answer,
      done: Boolean(entry.sawDone || entry.finish), // the server said it ended
      resumable: entry.resumable,
    });
  }

  // A resume found nothing (the stream expired): as if it had never been tried.
  function forget(entry) {
    state.streams = state.streams.filter((other) => other !== entry);
    if (isLatest(entry)) {
      state.currentId = null;
      state.answer = "";
      saveRecord({ id: "", last: "0", answer: "", done: true, resumable: false });
      renderAnswer();
      renderStatus();
    }
    renderStreams();
  }

  // -- one stream ---------------------------------------------------------------------------

  function isLatest(entry) {
    return entry.seq === state.seq;
  }

  function adopt(entry, id) {
    entry.id = id;
    state.known.add(id);
    // Only the latest send's response names the current stream; a late answer to an older
    // send must not take the answer back.
    if (isLatest(entry) && state.currentId === null) state.currentId = id;
    renderStatus();
    renderStreams();
  }

  // The stream is over (once): its end goes in the debug list, and on the page if it is the
  // latest send's.
  function finish(entry, reason, message) {
    if (entry.end) return;
    entry.end = reason;
    if (isLatest(entry)) {
      state.endReason = reason;
      showError(message || "");
      renderStatus();
      remember(entry, "");
    }
    renderStreams();
  }

  function onEvent(entry, event) {
    if (entry.sawDone) return; // nothing after [DONE] counts, even within the same read
    if (event.data === "[DONE]") {
      entry.sawDone = true;
      remember(entry, event.id);
      return;
    }
    let chunk;
    try {
      chunk = JSON.parse(event.data);
    } catch (_) {
      entry.problem = `a malformed chunk: ${event.data.slice(0, 80)}`;
      return;
    }
    if (!chunk || typeof chunk !== "object") return;
    const id = typeof chunk.id === "string" && chunk.id ? chunk.id : entry.id;
    if (!entry.id) adopt(entry, id || `local-${entry.seq}`); // no X-Stream-Id header
    const end = endOf(chunk);
    if (end) entry.finish = end; // every stream's end is listed, current or not
    if (chunk.error && chunk.error.message) entry.problem = String(chunk.error.message);
    // The guard: a chunk of any stream but the current one never reaches the answer.
    if (guardOn && (id || entry.id) !== state.currentId) {
      state.dropped += 1;
      renderDropped();
      return;
    }
    const text = contentOf(chunk);
    if (text) {
      state.answer += text;
      renderAnswer();
    }
    remember(entry, event.id);
  }

  async function errorMessage(response) {
    let text = "";
    try {
      text = await response.text();
      const body = JSON.parse(text);
      if (body && body.error && body.error.message) return String(body.error.message);
    } catch (_) {
      // not JSON (or the read failed): say what there is
    }
    return text.slice(0, 200) || response.statusText;
  }

  async function run(entry, signal) {
    const body = { messages: [{ role: "user", content: entry.prompt }], stream: true };
    await read(entry, signal, CHAT_PATH, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Session-Id": session },
      body: JSON.stringify(body),
    });
  }

  // The rest of a stream after `last` (GET /v1/streams/{id}): a reload, or a second tab.
  async function follow(entry, signal, last) {
    await read(entry, signal, STREAMS_PATH + encodeURIComponent(entry.id), {
      headers: { "X-Session-Id": session, "Last-Event-ID": String(last) },
    });
  }

  async function read(entry, signal, url, init) {
    let response;
    try {
      response = await fetch(url, { ...init, cache: "no-store", signal });
    } catch (err) {
      if (isAbort(err)) finish(entry, "aborted");
      else finish(entry, "error", `network error: ${describe(err)}`);
      return;
    }
    const streamId = response.headers.get("X-Stream-Id");
    entry.resumable = response.headers.has("X-Resume-TTL");
    if (streamId) adopt(entry, streamId);
    if (response.status === 404 && entry.resumed) {
      forget(entry); // the stream expired: nothing to pick up
      return;
    }
    if (!response.ok) {
      const message = await errorMessage(response);
      if (signal.aborted) finish(entry, "aborted");
      else finish(entry, "error", `HTTP ${response.status}: ${message}`);
      return;
    }
    if (!response.body) {
      finish(entry, "error", "the response has no body");
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const parser = new SSEParser((event) => onEvent(entry, event));
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
        if (entry.sawDone) break;
      }
      parser.feed(decoder.decode());
      parser.end();
    } catch (err) {
      if (isAbort(err)) finish(entry, "aborted");
      else finish(entry, "error", `the stream broke: ${describe(err)}`);
      return;
    }
    if (entry.sawDone) reader.cancel().catch(() => {});
    if (entry.finish) finish(entry, entry.finish, entry.finish === "error" ? entry.problem : "");
    else if (entry.sawDone) finish(entry, "done", entry.problem);
    // A stream closed with no terminator (jarvis fences a stream that overran the cancel wait).
    else finish(entry, "closed", "the stream closed before [DONE]");
  }

  // A new entry for the page's answer: a send, or a stream picked up from the record.
  function begin(prompt, streamId, answer) {
    if (state.controller && abortOld) state.controller.abort();
    state.seq += 1;
    state.currentId = streamId; // a send's response names its stream: nothing current until then
    state.answer = answer;
    state.endReason = "";
    const controller = new AbortController();
    state.controller = controller;
    const entry = {
      seq: state.seq, id: streamId || "", prompt, end: "", finish: "", problem: "",
      sawDone: false, last: "", resumed: Boolean(streamId), resumable: false,
    };
    state.streams.push(entry);
    if (state.streams.length > KEEP_STREAMS) state.streams.shift();
    renderAnswer();
    renderStatus();
    showError("");
    renderStreams();
    return { entry, signal: controller.signal };
  }

  function send(prompt) {
    const { entry, signal } = begin(prompt, null, "");
    run(entry, signal).catch((err) => finish(entry, "error", `page error: ${describe(err)}`));
  }

  // Pick up the session's stream where the record says it was: after its last event, with
  // the answer so far (a reload), or from its start (a tab that had none of it).
  function resume(record, fromStart) {
    if (!record || !record.resumable || record.done || state.known.has(record.id)) return;
    const last = fromStart ? "0" : record.last;
    const { entry, signal } = begin("(resumed)", record.id, fromStart ? "" : String(record.answer || ""));
    state.known.add(record.id);
    entry.last = last;
    follow(entry, signal, last).catch((err) => finish(entry, "error", `page error: ${describe(err)}`));
  }

  async function stop() {
    const id = state.currentId;
    if (!id) return;
    try {
      const response = await fetch(STREAMS_PATH + encodeURIComponent(id) + "/cancel", {
        method: "POST",
        headers: { "X-Session-Id": session },
        cache: "no-store",
      });
      if (!response.ok && response.status !== 404) {
        showError(`stop: HTTP ${response.status}: ${await errorMessage(response)}`);
      }
    } catch (err) {
      showError(`stop: network error: ${describe(err)}`);
    }
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = ui.prompt.value; // sent as typed: the answer is a function of it
    if (!prompt.trim()) return;
    ui.prompt.value = "";
    ui.prompt.focus(); // the next prompt can be typed at once, which is what interrupts are
    send(prompt);
  });
  ui.stop.addEventListener("click", () => {
    stop();
  });
  // Leaving or reloading the page closes its connection: the server cancels the stream
  // (`disconnected`), or, with resume on, lets it run on for its grace so the reloaded page
  // picks it up.
  window.addEventListener("pagehide", () => {
    state.leaving = true; // what the closing connection does to the read is not the stream's end
    if (state.controller) state.controller.abort();
  });
  // Another tab of this session started or moved its stream: follow it here too.
  window.addEventListener("storage", (event) => {
    if (event.key !== RESUME_KEY + session || !event.newValue) return;
    resume(loadRecord(), true); // a stream this tab has not seen: from its start
  });

  ui.session.textContent = session;
  ui.mode.textContent = `abort ${abortOld ? "on" : "off"}, guard ${guardOn ? "on" : "off"}`;
  renderDropped();
  renderStatus();
  resume(loadRecord(), false); // a reload (or a second tab) picks up the session's answer
})();
