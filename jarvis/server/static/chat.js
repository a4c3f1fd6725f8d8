// The jarvis chat page (docs/browser.md): one session per tab; sending while an answer
// streams interrupts it. The stream-id guard: the page keeps the current stream's id (the
// response's X-Stream-Id, which jarvis also puts in every chunk's `id`) and drops every chunk
// whose id is another, so an older stream never writes into the answer, even while its
// fetch is still being read (?abort=0). Plain JS, served as it is: no build step.
"use strict";

(() => {
  const CHAT_PATH = "/v1/chat/completions";
  const SESSION_KEY = "jarvis.session";
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
  };

  const state = {
    seq: 0, // sends so far: only the latest send's response may set the current id
    currentId: null, // the current stream's id; null until its response arrives
    controller: null, // the latest fetch's AbortController
    answer: "",
    endReason: "",
    dropped: 0,
    streams: [], // one entry per send, for the debug panel
  };
  const session = tabSession();

  // One session per tab: sessionStorage lives as long as the tab, reloads included.
  function tabSession() {
    let id = null;
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
        if (this.data.length > 0) this.onEvent({ type: this.type || "message", data: this.data.join("\n") });
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

  // -- one stream ---------------------------------------------------------------------------

  function isLatest(entry) {
    return entry.seq === state.seq;
  }

  function adopt(entry, id) {
    entry.id = id;
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
    }
    renderStreams();
  }

  function onEvent(entry, event) {
    if (entry.sawDone) return; // nothing after [DONE] counts, even within the same read
    if (event.data === "[DONE]") {
      entry.sawDone = true;
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
    let response;
    try {
      response = await fetch(CHAT_PATH, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-Session-Id": session },
        body: JSON.stringify(body),
        cache: "no-store",
        signal,
      });
    } catch (err) {
      if (isAbort(err)) finish(entry, "aborted");
      else finish(entry, "error", `network error: ${describe(err)}`);
      return;
    }
    const streamId = response.headers.get("X-Stream-Id");
    if (streamId) adopt(entry, streamId);
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

  function send(prompt) {
    if (state.controller && abortOld) state.controller.abort();
    state.seq += 1;
    state.currentId = null; // until this send's response names its stream, nothing is current
    state.answer = "";
    state.endReason = "";
    const controller = new AbortController();
    state.controller = controller;
    const entry = { seq: state.seq, id: "", prompt, end: "", finish: "", problem: "", sawDone: false };
    state.streams.push(entry);
    if (state.streams.length > KEEP_STREAMS) state.streams.shift();
    renderAnswer();
    renderStatus();
    showError("");
    renderStreams();
    run(entry, controller.signal).catch((err) => finish(entry, "error", `page error: ${describe(err)}`));
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = ui.prompt.value; // sent as typed: the answer is a function of it
    if (!prompt.trim()) return;
    ui.prompt.value = "";
    ui.prompt.focus(); // the next prompt can be typed at once, which is what interrupts are
    send(prompt);
  });
  // Leaving or reloading the page ends the stream on purpose (the server logs `disconnected`).
  window.addEventListener("pagehide", () => {
    if (state.controller) state.controller.abort();
  });

  ui.session.textContent = session;
  ui.mode.textContent = `abort ${abortOld ? "on" : "off"}, guard ${guardOn ? "on" : "off"}`;
  renderDropped();
  renderStatus();
})();
