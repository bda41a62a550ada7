// The model page's playground: a form drawn from the model's input schema; runs a
// prediction through the public API (session auth) and streams it over the WebSocket.
(function () {
  "use strict";
  const root = document.getElementById("playground");
  if (!root) return;
  const schema = JSON.parse(document.getElementById("playground-schema").textContent || "{}");
  const example = JSON.parse(document.getElementById("playground-example").textContent || "{}");
  const fields = document.getElementById("playground-fields");
  const form = document.getElementById("playground-form");
  const runButton = document.getElementById("playground-run");
  const cancelButton = document.getElementById("playground-cancel");
  const statusEl = document.getElementById("playground-status");
  const progress = document.getElementById("playground-progress");
  const metricsEl = document.getElementById("playground-metrics");
  const errorEl = document.getElementById("playground-error");
  const output = document.getElementById("playground-output");
  const bars = document.getElementById("playground-bars");
  const link = document.getElementById("playground-link");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let current = null;

  function fieldFor(name, prop) {
    const wrap = document.createElement("p");
    const label = document.createElement("label");
    const id = "pg-" + name;
    label.htmlFor = id;
    label.textContent = prop.title || name;
    let input;
    const isList = prop.type === "array" || (Array.isArray(prop.type) && prop.type.includes("array"));
    if (prop.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
    } else if (prop.type === "integer" || prop.type === "number") {
      input = document.createElement("input");
      input.type = "number";
      input.step = prop.type === "integer" ? "1" : "any";
      if (prop.minimum !== undefined) input.min = prop.minimum;
      if (prop.maximum !== undefined) input.max = prop.maximum;
    } else {
      input = document.createElement("textarea");
      input.rows = isList || name === "prompt" || name === "text" || name === "input" ? 4 : 1;
    }
    input.id = id;
    input.name = name;
    input.dataset.kind = isList ? "list" : prop.type || "string";
    const value = example[name] !== undefined ? example[name] : prop.default;
    if (value !== undefined) {
      if (input.type === "checkbox") input.checked = Boolean(value);
      else input.value = Array.isArray(value) ? value.join("\n") : value;
    }
    wrap.append(label, input);
    if (prop.description) {
      const hint = document.createElement("small");
      hint.className = "muted";
      hint.textContent = prop.description;
      wrap.append(hint);
    }
    return wrap;
  }

  // PostgreSQL's jsonb does not keep the schema's key order (it sorts keys by length), so
  // the form orders fields itself: the main input first, then the usual knobs, then any
  // field of the listing's own, alphabetically.
  const FIELD_ORDER = ["prompt", "text", "input", "labels", "max_new_tokens", "temperature",
    "top_p", "stop", "seed"];
  function rank(name) {
    const index = FIELD_ORDER.indexOf(name);
    return index === -1 ? FIELD_ORDER.length : index;
  }
  const properties = schema.properties || {};
  Object.keys(properties)
    .filter((name) => name !== "messages" && properties[name].type !== "object")
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
    .forEach((name) => fields.append(fieldFor(name, properties[name])));

  function collect() {
    const input = {};
    fields.querySelectorAll("input, textarea").forEach((el) => {
      const kind = el.dataset.kind;
      if (el.type === "checkbox") input[el.name] = el.checked;
      else if (el.value === "") return;
      else if (kind === "integer") input[el.name] = parseInt(el.value, 10);
      else if (kind === "number") input[el.name] = parseFloat(el.value);
      else if (kind === "list") input[el.name] = el.value.split("\n").filter(Boolean);
      else input[el.name] = el.value;
    });
    return input;
  }

  function setStatus(text) {
    statusEl.textContent = text;
    statusEl.className = "status status-" + text.split(" ")[0];
  }

  // tokensPerSecond: measured from the first streamed token, so a cold model load (which
  // the prediction's predict_time includes) does not drag the figure down.
  function finish(prediction, tokensPerSecond) {
    progress.hidden = true;
    runButton.disabled = false;
    cancelButton.disabled = true;
    setStatus(prediction.status);
    const m = prediction.metrics || {};
    const rate = tokensPerSecond ? tokensPerSecond.toFixed(1) + " tok/s · " : "";
    metricsEl.textContent = rate + (m.input_tokens || 0) + " in / " + (m.output_tokens || 0) + " out tokens";
    if (prediction.error) showError(prediction.error);
    renderFinal(prediction.output);
    link.hidden = false;
    link.querySelector("a").href = "/predictions/" + prediction.id + "/";
    toast("Prediction " + prediction.status);
  }

  function renderFinal(value) {
    const task = root.dataset.task;
    if (task === "embeddings" && Array.isArray(value)) {
      const first = value[0] || [];
      output.textContent = value.length + " vector(s) of size " + first.length + ": [" +
        first.slice(0, 8).map((x) => x.toFixed(4)).join(", ") + ", …]";
    } else if (task === "text-classification" && value) {
      const labels = value.labels || value;
      bars.replaceChildren();
      labels.forEach((item) => {
        const row = document.createElement("div");
        row.className = "bar";
        const pct = Math.round(item.score * 100);
        row.innerHTML = "<span></span><span class=\"fill\"></span><span></span>";
        row.children[0].textContent = item.label;
        row.children[1].style.width = pct + "%";
        row.children[2].textContent = pct + "%";
        bars.append(row);
      });
    } else if (typeof value === "string") {
      output.textContent = value;
    }
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
  }

  function toast(message) {
    const el = document.createElement("div");
    el.className = "toast";
    el.setAttribute("role", "status");
    el.textContent = message;
    document.body.append(el);
    setTimeout(() => el.remove(), 3000);
  }

  async function pollQueue(prediction) {
    while (current === prediction.id) {
      const response = await fetch(prediction.urls.get, { credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.json();
      if (body.status !== "starting") return;
      const pos = body.queue_position;
      setStatus(pos ? "starting (queue position " + pos + ")" : "starting (loading model)");
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  function stream(prediction) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/ws/predictions/" + prediction.id + "/");
    let tokens = 0;
    let firstAt = null;
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "status") {
        setStatus(event.data.status);
        if (event.data.status === "processing") progress.hidden = false;
      } else if (event.type === "output") {
        if (typeof event.data === "string") {
          output.append(document.createTextNode(event.data));
          tokens += 1;
          firstAt = firstAt || performance.now();
          const seconds = (performance.now() - firstAt) / 1000;
          metricsEl.textContent = tokens + " tokens" + (seconds > 0.2 ? " · " + (tokens / seconds).toFixed(1) + " tok/s" : "");
        }
      } else if (event.type === "error") {
        showError(event.data.message);
      } else if (event.type === "done") {
        const seconds = firstAt ? (performance.now() - firstAt) / 1000 : 0;
        finish(event.data, tokens > 1 && seconds > 0 ? (tokens - 1) / seconds : null);
      }
    };
    socket.onerror = () => showError("Lost the connection to the stream.");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errorEl.hidden = true;
    output.textContent = "";
    bars.replaceChildren();
    link.hidden = true;
    metricsEl.textContent = "";
    runButton.disabled = true;
    setStatus("starting");
    const response = await fetch(root.dataset.createUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify({ model: root.dataset.model, input: collect(), source: "playground" }),
    });
    const body = await response.json();
    if (!response.ok) {
      runButton.disabled = false;
      setStatus("idle");
      showError(body.error ? body.error.message : "The request failed.");
      return;
    }
    current = body.id;
    cancelButton.disabled = false;
    cancelButton.dataset.url = body.urls.cancel;
    stream(body);
    pollQueue(body);
  });

  cancelButton.addEventListener("click", async () => {
    cancelButton.disabled = true;
    await fetch(cancelButton.dataset.url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrf },
    });
    toast("Cancel requested");
  });
})();
