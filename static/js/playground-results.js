// How a finished prediction looks in the playground, by task: vectors with their
// similarities, labelled score bars, boxes drawn over the input image (OCR, object
// detection), or text (Markdown). Chat replies are drawn by playground.js as they stream.
(function () {
  "use strict";

  // Characters of a text shown as a row or column name of the similarity matrix.
  const SHORT_TEXT = 40;
  // Values of each vector shown before "…".
  const PREVIEW_VALUES = 6;

  function element(tag, className, text) {
    const el = document.createElement(tag);
    if (className) el.className = className;
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function button(label, onClick) {
    const el = element("button", "secondary", label);
    el.type = "button";
    el.addEventListener("click", () => onClick(el));
    return el;
  }

  function shorten(text) {
    return text.length > SHORT_TEXT ? text.slice(0, SHORT_TEXT - 1) + "…" : text;
  }

  function cosine(a, b) {
    let dot = 0;
    let normA = 0;
    let normB = 0;
    for (let i = 0; i < a.length; i += 1) {
      dot += a[i] * b[i];
      normA += a[i] * a[i];
      normB += b[i] * b[i];
    }
    return normA && normB ? dot / Math.sqrt(normA * normB) : 0;
  }

  // Cosine similarity of every pair of texts; the cell's shade says how close they are.
  function similarityMatrix(texts, vectors) {
    const table = element("table", "similarity");
    const caption = element("caption", "small", "Cosine similarity (1 = same meaning)");
    const head = element("tr");
    head.append(element("th", "", ""));
    texts.forEach((text, i) => {
      const th = element("th", "", String(i + 1));
      th.scope = "col";
      th.title = text;
      head.append(th);
    });
    const thead = element("thead");
    thead.append(head);
    const tbody = element("tbody");
    vectors.forEach((row, i) => {
      const tr = element("tr");
      const th = element("th", "", (i + 1) + ". " + shorten(texts[i]));
      th.scope = "row";
      th.title = texts[i];
      tr.append(th);
      vectors.forEach((column) => {
        const value = cosine(row, column);
        const td = element("td", "sim", value.toFixed(2));
        // A custom property from script (CSSOM), which the CSP allows; CSS picks the shade.
        td.style.setProperty("--sim", Math.max(0, value).toFixed(3));
        tr.append(td);
      });
      tbody.append(tr);
    });
    table.append(caption, thead, tbody);
    return table;
  }

  function download(name, text) {
    const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    const link = element("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  function embeddings(target, vectors, input) {
    const texts = typeof input.input === "string" ? [input.input] : input.input || [];
    const dimension = (vectors[0] || []).length;
    const json = JSON.stringify(vectors);
    const summary = element("div", "result-summary");
    const facts = element("p", "", "");
    const count = vectors.length === 1 ? "1 vector" : vectors.length + " vectors";
    facts.append(element("strong", "", count), document.createTextNode(" · dimension "),
      element("strong", "embedding-dimension", String(dimension)));
    const actions = element("div", "actions");
    actions.append(
      button("Copy JSON", (el) => window.PortalMarkdown.copyText(json, el)),
      button("Download JSON", () => download("embeddings.json", json)),
    );
    summary.append(facts, actions);
    target.append(summary);
    if (vectors.length > 1 && texts.length === vectors.length) {
      target.append(similarityMatrix(texts, vectors));
    }
    const list = element("ol", "vectors small");
    vectors.forEach((vector, i) => {
      const item = element("li");
      item.title = texts[i] || "";
      item.append(element("code", "", "[" + vector.slice(0, PREVIEW_VALUES).map((x) => x.toFixed(4)).join(", ") + ", …]"));
      list.append(item);
    });
    target.append(list);
  }

  // Labels with scores, best first: each a bar on a track, its share written beside it.
  function classification(target, value) {
    const labels = Array.isArray(value) ? value : value.labels || [];
    const list = element("ol", "bars");
    list.setAttribute("aria-label", "Scores by label");
    labels.forEach((item, index) => {
      const pct = Math.round(item.score * 1000) / 10;
      const row = element("li", "bar" + (index === 0 ? " best" : ""));
      const track = element("span", "bar-track");
      const fill = element("span", "bar-fill");
      fill.style.width = Math.max(0, Math.min(100, pct)) + "%";
      track.append(fill);
      row.append(element("span", "bar-label", item.label), track, element("span", "bar-value", pct.toFixed(1) + "%"));
      list.append(row);
    });
    target.append(list);
  }

  // --- Vision: boxes over the image ----------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function svgElement(tag, attributes) {
    const el = document.createElementNS(SVG, tag);
    Object.entries(attributes).forEach(([key, value]) => el.setAttribute(key, value));
    return el;
  }

  function percent(score) {
    return (Math.round(score * 1000) / 10).toFixed(1) + "%";
  }

  // The image the input sent: a data: URI as is, an uploaded file from the org's file page.
  function imageSource(value) {
    if (typeof value !== "string") return null;
    if (value.startsWith("data:image/")) return value;
    return window.PlaygroundImage ? window.PlaygroundImage.fileUrl(value) : null;
  }

  // One box: OCR's four corners as a polygon, a detection's [x1, y1, x2, y2] as a rectangle
  // with its label and score written at its top left corner.
  function shape(task, item, fontSize) {
    const group = svgElement("g", { class: "vision-box" });
    if (task === "ocr") {
      group.append(svgElement("polygon", { points: item.box.map((p) => p.join(",")).join(" ") }));
      return group;
    }
    const [x1, y1, x2, y2] = item.box;
    group.append(svgElement("rect", { x: x1, y: y1, width: Math.max(0, x2 - x1), height: Math.max(0, y2 - y1) }));
    const caption = svgElement("text", { x: x1, y: Math.max(fontSize, y1 - fontSize * 0.3), "font-size": fontSize });
    caption.textContent = item.label + " " + percent(item.score);
    group.append(caption);
    return group;
  }

  // What each box holds, beside the image: OCR's text in reading order, or the labels.
  function listItem(task, item, index) {
    const row = element("li", "vision-item");
    row.tabIndex = 0;
    row.dataset.index = String(index);
    const what = task === "ocr" ? item.text : item.label;
    row.append(element("span", "vision-text", what), element("span", "vision-score muted small", percent(item.score)));
    return row;
  }

  // Hovering or focusing a line of the list, or hovering its box, lights both up.
  function linkHighlight(row, box) {
    const on = () => { row.classList.add("active"); box.classList.add("active"); };
    const off = () => { row.classList.remove("active"); box.classList.remove("active"); };
    [row, box].forEach((el) => {
      el.addEventListener("mouseenter", on);
      el.addEventListener("mouseleave", off);
    });
    row.addEventListener("focus", on);
    row.addEventListener("blur", off);
  }

  // The image at any width with an SVG over it whose viewBox is the image's own pixel size:
  // boxes come in those pixels (as displayed, EXIF applied), so they stay on what they mark.
  function vision(target, task, items, input) {
    const src = imageSource(input && input.image);
    const result = element("div", "vision-result");
    const figure = element("figure", "vision-figure");
    const list = element("ol", "vision-list");
    list.setAttribute("aria-label", task === "ocr" ? "Text found, in reading order" : "Objects found");
    const noun = task === "ocr" ? ["line of text", "lines of text"] : ["object", "objects"];
    const found = items.length + " " + noun[items.length === 1 ? 0 : 1];
    if (src) {
      const img = element("img");
      img.alt = "The input image with " + found + " drawn over it";
      const overlay = svgElement("svg", { class: "vision-overlay", preserveAspectRatio: "none", "aria-hidden": "true" });
      // Boxes wait for the image's natural size: labels are sized in its pixels.
      const draw = () => {
        const width = img.naturalWidth;
        const height = img.naturalHeight;
        overlay.setAttribute("viewBox", "0 0 " + width + " " + height);
        const fontSize = Math.max(10, Math.round(Math.max(width, height) / 40));
        items.forEach((item, index) => {
          const box = shape(task, item, fontSize);
          overlay.append(box);
          linkHighlight(list.children[index], box);
        });
        figure.dataset.boxes = String(items.length);
      };
      img.addEventListener("load", draw, { once: true });
      img.src = src;
      figure.append(img, overlay);
    }
    items.forEach((item, index) => list.append(listItem(task, item, index)));
    const side = element("div", "vision-side");
    const none = task === "ocr" ? "No text found." : "Nothing found at or above the minimum score.";
    side.append(element("p", "small", items.length ? found + " found." : none), list);
    result.append(figure, side);
    target.append(result);
  }

  function text(target, value) {
    const body = element("div", "markdown");
    window.PortalMarkdown.render(body, value);
    target.append(body);
  }

  // Draws `prediction.output` into `target` (emptied first); `input` is what was sent.
  function render(target, task, prediction, input) {
    target.replaceChildren();
    const value = prediction.output;
    if (value === null || value === undefined) return;
    if (task === "embeddings" && Array.isArray(value)) embeddings(target, value, input);
    else if (task === "text-classification") classification(target, value);
    else if ((task === "ocr" || task === "object-detection") && Array.isArray(value)) vision(target, task, value, input);
    else if (typeof value === "string") text(target, value);
    else target.append(element("pre", "", JSON.stringify(value, null, 2)));
  }

  // One line of figures that mean something for the task: no "0 out tokens" for a
  // classifier, no tokens per second for a single forward pass.
  function metrics(task, prediction, tokensPerSecond) {
    const m = prediction.metrics || {};
    const parts = [];
    if (task === "text-generation") {
      parts.push((m.input_tokens || 0) + " in / " + (m.output_tokens || 0) + " out tokens");
      if (tokensPerSecond) parts.push(tokensPerSecond.toFixed(1) + " tok/s");
    } else if (m.input_tokens) {
      parts.push(m.input_tokens + " input tokens");
    }
    if (typeof m.predict_time === "number") parts.push(m.predict_time.toFixed(2) + " s");
    return parts.join(" · ");
  }

  window.PlaygroundResults = { render, metrics };
})();
