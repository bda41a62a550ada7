// The model page's playground: runs a prediction through the public API with the browser
// session (and its CSRF token), follows it over the prediction's WebSocket, and shows the
// result; chat models keep a thread whose whole history goes with every message. The API
// tab shows the call just made, as curl, Python, the OpenAI SDK and JavaScript.
(function () {
  "use strict";
  const root = document.getElementById("playground");
  const formEl = document.getElementById("playground-form");
  if (!root || !formEl) return; // signed out: the section only invites to log in

  const $ = (id) => document.getElementById(id);
  const readJSON = (id) => JSON.parse(($(id) && $(id).textContent) || "null");
  const task = root.dataset.task;
  const chat = root.dataset.mode === "chat";
  const csrf = formEl.querySelector("input[name=csrfmiddlewaretoken]").value;
  const ui = {
    run: $("playground-run"), cancel: $("playground-cancel"),
    regenerate: $("playground-regenerate"), clear: $("playground-clear"),
    status: $("playground-status"), progress: $("playground-progress"),
    metrics: $("playground-metrics"), link: $("playground-link"), error: $("playground-error"),
    output: $("playground-output"), composer: $("pg-prompt"), system: $("pg-system"),
  };
  const start = readJSON("playground-example") || {};
  const form = window.PlaygroundFields.build({
    schema: readJSON("playground-schema") || {},
    values: start,
    defaults: readJSON("playground-defaults") || {},
    visible: $("playground-fields"),
    advanced: $("playground-advanced-fields"),
    // A chat's text is its thread and composer, not schema fields.
    skip: chat ? ["prompt", "messages"] : [],
  });

  let current = null; // the prediction in flight: {id, cancelUrl}
  const turns = []; // the chat so far, oldest first, as {role, content} (system prompt apart)

  // --- Small helpers -------------------------------------------------------------------

  function setStatus(text) {
    ui.status.textContent = text;
    ui.status.className = "status status-" + text.split(" ")[0];
  }

  function showError(message) {
    ui.error.textContent = message;
    ui.error.hidden = false;
  }

  function clearErrors() {
    ui.error.hidden = true;
    form.clearErrors();
  }

  function toast(message) {
    const el = document.createElement("div");
    el.className = "toast";
    el.setAttribute("role", "status");
    el.textContent = message;
    document.body.append(el);
    setTimeout(() => el.remove(), 3000);
  }

  // "Press Run…" while there is nothing to show, rather than an empty box.
  const placeholder = ui.output.querySelector(".pg-placeholder");
  function removePlaceholder() {
    if (placeholder) placeholder.remove();
  }
  function restorePlaceholder() {
    if (placeholder && !ui.output.children.length) ui.output.append(placeholder);
  }

  // Every button says what it can do now: Run while idle, Stop while running, Regenerate
  // once there is a message to answer again, Clear once there is a thread.
  function updateButtons() {
    const busy = current !== null;
    ui.run.disabled = busy;
    ui.run.textContent = busy ? "Running…" : "Run";
    ui.cancel.disabled = !busy || Boolean(current && current.stopping);
    if (ui.regenerate) ui.regenerate.disabled = busy || !turns.some((t) => t.role === "user");
    if (ui.clear) ui.clear.disabled = busy || turns.length === 0;
  }

  // --- One prediction: create, follow, finish -------------------------------------------

  class Refused extends Error {
    constructor(error, status) {
      super((error && error.message) || "The request failed (HTTP " + status + ").");
      this.param = error && error.param;
    }
  }

  async function createPrediction(input) {
    let response;
    try {
      response = await fetch(root.dataset.createUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify({ model: root.dataset.model, input }),
      });
    } catch {
      throw new Refused({ message: "Could not reach the portal. Check the connection and run again." });
    }
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Refused(body && body.error, response.status);
    return body;
  }

  // While the prediction waits for a worker, the status says where it is in the queue.
  async function pollQueue(prediction) {
    while (current && current.id === prediction.id) {
      const response = await fetch(prediction.urls.get, { credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.json();
      if (body.status !== "starting" || !current || current.id !== prediction.id) return;
      const position = body.queue_position;
      setStatus(position ? "starting (queue position " + position + ")" : "starting (loading model)");
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  // The prediction once it is terminal, read with a plain GET: for a socket that closed
  // before its `done` event (a restarted web process, a lost network).
  async function settle(prediction) {
    for (;;) {
      const response = await fetch(prediction.urls.get, { credentials: "same-origin" });
      const body = response.ok ? await response.json() : null;
      if (body && ["succeeded", "failed", "canceled"].includes(body.status)) return body;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  // Follows the prediction's events until it is done. `onDelta(text)` gets the whole
  // text streamed so far after each output event. Resolves {prediction, text, rate}.
  function follow(prediction, onDelta) {
    return new Promise((resolve) => {
      const scheme = location.protocol === "https:" ? "wss://" : "ws://";
      const socket = new WebSocket(scheme + location.host + "/ws/predictions/" + prediction.id + "/");
      let text = "";
      let tokens = 0;
      let firstAt = null;
      let done = false;
      socket.onmessage = (message) => {
        const event = JSON.parse(message.data);
        if (event.type === "status") {
          setStatus(event.data.status);
          ui.progress.hidden = event.data.status !== "processing";
        } else if (event.type === "output" && typeof event.data === "string") {
          text += event.data;
          tokens += 1;
          firstAt = firstAt || performance.now();
          const seconds = (performance.now() - firstAt) / 1000;
          ui.metrics.textContent = tokens + " tokens" + (seconds > 0.2 ? " · " + (tokens / seconds).toFixed(1) + " tok/s" : "");
          if (onDelta) onDelta(text);
        } else if (event.type === "error") {
          showError(form.words(event.data.message));
        } else if (event.type === "done") {
          done = true;
          // Measured from the first token, so a cold model load does not drag it down.
          const seconds = firstAt ? (performance.now() - firstAt) / 1000 : 0;
          resolve({ prediction: event.data, text, rate: tokens > 1 && seconds > 0 ? (tokens - 1) / seconds : null });
        }
      };
      socket.onclose = () => {
        if (!done) settle(prediction).then((final) => resolve({ prediction: final, text, rate: null }));
      };
    });
  }

  function showRefusal(refused) {
    if (!form.showError(refused.param, refused.message)) showError(form.words(refused.message));
  }

  // Runs `input`; `view` draws it: onDelta(text) while it streams, onRefused() when the
  // portal refused it before it ran. Resolves the finished {prediction, text}, or null.
  async function execute(input, view) {
    current = { id: null, stopping: false };
    updateButtons();
    setStatus("starting");
    ui.metrics.textContent = "";
    ui.link.hidden = true;
    showCall(input);
    let prediction;
    try {
      prediction = await createPrediction(input);
    } catch (refused) {
      current = null;
      updateButtons();
      setStatus("idle");
      if (view.onRefused) view.onRefused();
      showRefusal(refused);
      return null;
    }
    current = { id: prediction.id, cancelUrl: prediction.urls.cancel, stopping: false };
    updateButtons();
    pollQueue(prediction);
    const result = await follow(prediction, view.onDelta);
    current = null;
    updateButtons();
    finish(result);
    return result;
  }

  function finish({ prediction, rate }) {
    ui.progress.hidden = true;
    setStatus(prediction.status);
    ui.metrics.textContent = window.PlaygroundResults.metrics(task, prediction, rate);
    if (prediction.error) showError(form.words(prediction.error));
    ui.link.href = "/predictions/" + prediction.id + "/";
    ui.link.hidden = false;
    if (prediction.status === "canceled") toast("Stopped");
  }

  async function stop() {
    if (!current || !current.cancelUrl) return;
    current.stopping = true;
    updateButtons();
    await fetch(current.cancelUrl, { method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": csrf } });
  }

  // --- Plain form (embeddings, classification, models without chat) ----------------------

  async function runForm() {
    clearErrors();
    const input = form.collect();
    if (!form.checkRequired(input)) return;
    removePlaceholder();
    ui.output.replaceChildren();
    const streamed = document.createElement("div");
    streamed.className = "markdown";
    const result = await execute(input, {
      onDelta: (text) => renderSoon(streamed, text, () => ui.output.replaceChildren(streamed)),
    });
    cancelRender(streamed);
    if (result) window.PlaygroundResults.render(ui.output, task, result.prediction, input);
  }

  // Re-rendering Markdown for every token would redo the same work many times a frame:
  // the latest text is drawn once per animation frame.
  const pendingRenders = new Map();
  function renderSoon(target, text, before) {
    const waiting = pendingRenders.has(target);
    pendingRenders.set(target, text);
    if (waiting) return;
    requestAnimationFrame(() => {
      if (!pendingRenders.has(target)) return; // the final render came first
      const latest = pendingRenders.get(target);
      pendingRenders.delete(target);
      if (before) before();
      renderFollowing(target, latest);
    });
  }

  // Renders and follows the text down, unless the reader scrolled up to read something.
  function renderFollowing(target, text) {
    const output = ui.output;
    const pinned = output.scrollHeight - output.scrollTop - output.clientHeight < 40;
    window.PortalMarkdown.render(target, text);
    if (pinned) output.scrollTop = output.scrollHeight;
  }

  // The finished result replaces whatever the stream was about to draw.
  function cancelRender(target) {
    pendingRenders.delete(target);
  }

  // --- Chat ---------------------------------------------------------------------------

  const ROLE_NAMES = { user: "You", assistant: "Model", system: "System" };

  // One message of the thread; a reply's text is Markdown, a person's is shown as typed.
  function drawMessage(turn) {
    const box = document.createElement("div");
    box.className = "message message-" + turn.role;
    const head = document.createElement("div");
    head.className = "message-role";
    head.textContent = ROLE_NAMES[turn.role] || turn.role;
    const body = document.createElement("div");
    body.className = "message-body" + (turn.role === "assistant" ? " markdown" : "");
    box.append(head, body);
    if (turn.role === "assistant") {
      window.PortalMarkdown.render(body, turn.content);
      const copy = document.createElement("button");
      copy.type = "button";
      copy.className = "secondary copy-message";
      copy.textContent = "Copy";
      copy.setAttribute("aria-label", "Copy this reply as Markdown");
      copy.addEventListener("click", () => window.PortalMarkdown.copyText(box.dataset.raw || "", copy));
      head.append(copy);
      box.dataset.raw = turn.content;
    } else {
      body.textContent = turn.content;
    }
    removePlaceholder();
    ui.output.append(box);
    ui.output.scrollTop = ui.output.scrollHeight;
    return box;
  }

  function setReply(box, text) {
    const body = box.querySelector(".message-body");
    cancelRender(body);
    box.dataset.raw = text;
    renderFollowing(body, text);
  }

  function systemMessages() {
    const text = ui.system.value.trim() ? ui.system.value : "";
    return text ? [{ role: "system", content: text }] : [];
  }

  // The form starts from the example (or a prediction's input): a leading system message
  // fills the system prompt, the last user message the composer, the rest the thread.
  function prefillChat(input) {
    const messages = Array.isArray(input.messages) ? input.messages.slice() : [];
    if (!messages.length) {
      if (typeof input.prompt === "string") ui.composer.value = input.prompt;
      return;
    }
    if (messages[0].role === "system") ui.system.value = messages.shift().content;
    if (messages.length && messages[messages.length - 1].role === "user") {
      ui.composer.value = messages.pop().content;
    }
    messages.forEach((turn) => {
      turns.push({ role: turn.role, content: turn.content });
      drawMessage(turn);
    });
  }

  function lastTurn() {
    return turns[turns.length - 1];
  }

  // mode "send": the composer's message (or, when it is empty and the last message waits
  // for an answer, that one again); "regenerate": a new answer replaces the last one.
  async function runChat(mode) {
    if (current) return;
    clearErrors();
    let sent = null;
    let replaced = null;
    if (mode === "regenerate") {
      if (lastTurn() && lastTurn().role === "assistant") {
        replaced = { turn: turns.pop(), box: ui.output.querySelector(".message:last-child") };
        replaced.box.remove();
      }
    } else if (ui.composer.value.trim()) {
      sent = { role: "user", content: ui.composer.value };
      turns.push(sent);
      sent.box = drawMessage(sent);
      ui.composer.value = "";
    } else if (!lastTurn() || lastTurn().role !== "user") {
      form.markError("prompt", "Write a message first.");
      ui.composer.focus();
      return;
    }
    const messages = systemMessages().concat(turns.map((t) => ({ role: t.role, content: t.content })));
    const input = { ...form.collect(), messages };
    const reply = drawMessage({ role: "assistant", content: "" });
    reply.classList.add("streaming");
    const result = await execute(input, {
      onDelta: (text) => renderSoon(reply.querySelector(".message-body"), text, () => { reply.dataset.raw = text; }),
      onRefused: () => {
        // Nothing ran: the thread and the composer are as they were before Run.
        reply.remove();
        if (sent) {
          turns.pop();
          sent.box.remove();
          ui.composer.value = sent.content;
        }
        if (replaced) {
          turns.push(replaced.turn);
          ui.output.append(replaced.box);
        }
        restorePlaceholder();
        updateButtons();
      },
    });
    if (!result) return;
    reply.classList.remove("streaming");
    const { prediction, text } = result;
    const content = typeof prediction.output === "string" ? prediction.output : text;
    if (!content) {
      reply.remove(); // failed, or stopped before the first token: no reply to keep
      restorePlaceholder();
    } else {
      setReply(reply, content);
      // A stopped reply stays in the thread as far as it got, as chat playgrounds do.
      if (prediction.status === "canceled") reply.classList.add("stopped");
      turns.push({ role: "assistant", content });
    }
    updateButtons();
  }

  function clearChat() {
    if (current) return;
    turns.length = 0;
    ui.output.replaceChildren();
    restorePlaceholder();
    clearErrors();
    ui.metrics.textContent = "";
    ui.link.hidden = true;
    setStatus("idle");
    updateButtons();
    ui.composer.focus();
  }

  // --- The API tab --------------------------------------------------------------------

  const api = {
    snippets: readJSON("playground-snippets") || [],
    shown: "example", // "example" (the page's), "pending" (the inputs now) or "ran"
    key: null,
    note: $("playground-api-note"),
    code: $("playground-code"),
    languages: $("playground-languages"),
  };

  // Short tab names; the snippets' own labels say more (the model page's code section).
  const LANGUAGE_TABS = { curl: "curl", python: "Python", openai: "OpenAI SDK", websocket: "JavaScript", javascript: "JavaScript" };

  function drawLanguages() {
    if (!api.snippets.some((s) => s.key === api.key)) api.key = (api.snippets[0] || {}).key;
    api.languages.replaceChildren();
    api.snippets.forEach((snippet) => {
      const tab = document.createElement("button");
      tab.type = "button";
      tab.className = "tab";
      tab.setAttribute("role", "tab");
      tab.id = "playground-lang-" + snippet.key;
      tab.textContent = LANGUAGE_TABS[snippet.key] || snippet.label;
      tab.setAttribute("aria-selected", String(snippet.key === api.key));
      tab.tabIndex = snippet.key === api.key ? 0 : -1;
      tab.addEventListener("click", () => { api.key = snippet.key; drawLanguages(); });
      api.languages.append(tab);
    });
    const snippet = api.snippets.find((s) => s.key === api.key);
    api.code.textContent = snippet ? snippet.code : "";
    if (snippet) window.PortalMarkdown.highlightElement(api.code, snippet.language);
  }

  // The code for `input`, made by the server (models_hub/snippets.py) so that the page's
  // examples and this tab write the same call the same way, with this site's base URL.
  // `ran`: the call was just made (else it is the one Run would make now).
  let callsAsked = 0;
  async function showCall(input, ran = true) {
    const asked = ++callsAsked;
    // The code uploads an image file rather than inlining one (models_hub/snippets.py):
    // an image's bytes need not travel to be formatted.
    const sent = {};
    Object.entries(input).forEach(([name, value]) => {
      sent[name] = typeof value === "string" && value.startsWith("data:") ? "data:" : value;
    });
    const response = await fetch(root.dataset.snippetsUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ input: sent }),
    }).catch(() => null);
    if (!response || !response.ok) return;
    const snippets = (await response.json()).snippets;
    if (asked !== callsAsked) return; // a later call's code is on its way
    api.snippets = snippets;
    api.shown = ran ? "ran" : "pending";
    api.note.textContent = (ran ? "The call you just ran" : "The call Run makes with the inputs as they are") +
      ", with an API token in the MODEL_PORTAL_TOKEN environment variable.";
    drawLanguages();
  }

  // What Run would send now, for the API tab before anything has run.
  function pendingInput() {
    if (!chat) return form.collect();
    const next = ui.composer.value.trim() ? [{ role: "user", content: ui.composer.value }] : [];
    const history = turns.map((t) => ({ role: t.role, content: t.content }));
    return { ...form.collect(), messages: systemMessages().concat(history, next) };
  }

  // Tabs: a click or the arrow keys choose one; only the chosen panel is shown.
  function setupTabs(list) {
    const tabs = [...list.querySelectorAll("[role=tab]")];
    function choose(tab) {
      tabs.forEach((other) => {
        const chosen = other === tab;
        other.setAttribute("aria-selected", String(chosen));
        other.tabIndex = chosen ? 0 : -1;
        $(other.getAttribute("aria-controls")).hidden = !chosen;
      });
    }
    tabs.forEach((tab, index) => {
      tab.addEventListener("click", () => choose(tab));
      tab.addEventListener("keydown", (event) => {
        const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
        if (!step) return;
        const next = tabs[(index + step + tabs.length) % tabs.length];
        choose(next);
        next.focus();
      });
    });
  }

  // --- Wiring -------------------------------------------------------------------------

  formEl.addEventListener("submit", (event) => {
    event.preventDefault();
    if (chat) runChat("send");
    else runForm();
  });
  ui.cancel.addEventListener("click", stop);
  if (chat) {
    form.alias("prompt", ui.composer, "The message");
    form.alias("messages", ui.composer, "The conversation");
    prefillChat(start);
    ui.regenerate.addEventListener("click", () => runChat("regenerate"));
    ui.clear.addEventListener("click", clearChat);
    ui.composer.addEventListener("input", () => ui.composer.removeAttribute("aria-invalid"));
    // Enter sends, Shift+Enter starts a new line (not while an input method composes).
    ui.composer.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        if (!current) formEl.requestSubmit();
      }
    });
  }
  setupTabs(root.querySelector(".pg-results > [role=tablist]"));
  // Until something runs, the API tab follows the inputs as they are when it is opened.
  $("playground-tab-api").addEventListener("click", () => {
    if (api.shown !== "ran") showCall(pendingInput(), false);
  });
  // Ctrl+Enter (Cmd+Enter) runs from any field, as in other playgrounds.
  formEl.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && !current) {
      event.preventDefault();
      formEl.requestSubmit();
    }
  });
  drawLanguages();
  updateButtons();
})();
