// Model output rendered as Markdown, safely. The model's text is not ours (a prompt can
// make it write <script> or <img onerror>), so: marked shows any HTML in it as text, the
// way chat apps do, DOMPurify removes whatever could still run or load something from the
// HTML marked makes (a javascript: link), and highlight.js colours the code blocks.
// Libraries come from npm (portal/vendor.py); without them the text is shown as it is.
(function () {
  "use strict";

  // Besides DOMPurify's own removals (scripts, event handlers, javascript: URLs): nothing
  // that loads from elsewhere (an image URL can carry the conversation to a third party),
  // nothing interactive, no inline styles (the Content-Security-Policy refuses them anyway).
  const SANITIZE = {
    FORBID_TAGS: ["img", "picture", "source", "video", "audio", "iframe", "object", "embed",
      "svg", "math", "style", "form", "input", "button", "textarea", "select"],
    FORBID_ATTR: ["style", "srcset"],
  };
  // highlight.js names shell code "bash"; the portal's snippets say "shell".
  const LANGUAGE_ALIASES = { shell: "bash" };

  function available() {
    return Boolean(window.marked && window.DOMPurify);
  }

  function escapeHtml(text) {
    const entities = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
    return text.replace(/[&<>"']/g, (c) => entities[c]);
  }

  // HTML in the text is shown, never parsed: not even the sanitizer then sees an
  // <img onerror>, which Chromium reports to the Content-Security-Policy as it parses.
  // An image becomes a link to it, so nothing loads from elsewhere unasked.
  const RENDERER = {
    html(token) {
      return token.block ? "<p>" + escapeHtml(token.text) + "</p>" : escapeHtml(token.text);
    },
    image(token) {
      return '<a href="' + escapeHtml(token.href) + '">' + escapeHtml(token.text || token.href) + "</a>";
    },
  };
  let parser = null;
  function markdownParser() {
    if (!parser) parser = new window.marked.Marked({ gfm: true, async: false, renderer: RENDERER });
    return parser;
  }

  function highlightable() {
    return Boolean(window.hljs);
  }

  // The code's own language when highlight.js knows it, else its best guess.
  function highlightCode(code, language) {
    if (!highlightable()) return null;
    const name = LANGUAGE_ALIASES[language] || language;
    if (name && window.hljs.getLanguage(name)) {
      return window.hljs.highlight(code, { language: name, ignoreIllegals: true }).value;
    }
    return window.hljs.highlightAuto(code).value;
  }

  // Colours one <code> element in place (its text is all it holds).
  function highlightElement(element, language) {
    const html = highlightCode(element.textContent, language);
    if (html === null) return;
    element.innerHTML = html; // highlight.js escapes the code it wraps in spans
    element.classList.add("hljs");
  }

  function languageOf(code) {
    const match = /(?:^|\s)language-([\w+#-]+)/.exec(code.className);
    return match ? match[1] : "";
  }

  // A bar over each code block with its language and a copy button: code is what people
  // copy most from a reply.
  function addCodeBar(pre, language) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary copy-code";
    button.textContent = "Copy";
    button.addEventListener("click", () => copyText(pre.textContent, button));
    const name = document.createElement("span");
    name.textContent = language || "code";
    const bar = document.createElement("div");
    bar.className = "codeblock-bar";
    bar.append(name, button);
    const wrap = document.createElement("div");
    wrap.className = "codeblock";
    pre.replaceWith(wrap);
    wrap.append(bar, pre);
  }

  function decorate(target) {
    target.querySelectorAll("a[href]").forEach((link) => {
      link.rel = "noopener noreferrer nofollow";
      link.target = "_blank";
    });
    target.querySelectorAll("pre > code").forEach((code) => {
      const language = languageOf(code);
      highlightElement(code, language);
      addCodeBar(code.parentElement, language);
    });
  }

  // Replaces the content of `target` with `text` rendered as Markdown (or as plain text
  // when the libraries did not load).
  function render(target, text) {
    if (!available()) {
      target.textContent = text;
      return;
    }
    const html = markdownParser().parse(text);
    target.innerHTML = window.DOMPurify.sanitize(html, SANITIZE);
    decorate(target);
  }

  // The clipboard API needs a secure origin (https or localhost); a plain-http portal
  // still copies through a selected, off-screen textarea.
  function copyBySelection(text) {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const copied = document.execCommand("copy");
    area.remove();
    return copied;
  }

  async function copyText(text, button) {
    // The label before the first click: a second click must not restore "Copied".
    const label = button.dataset.label || (button.dataset.label = button.textContent);
    let copied = false;
    try {
      await navigator.clipboard.writeText(text);
      copied = true;
    } catch {
      copied = copyBySelection(text);
    }
    button.textContent = copied ? "Copied" : "Copy failed";
    setTimeout(() => { button.textContent = label; }, 2000);
  }

  window.PortalMarkdown = { render, highlightElement, copyText };
})();
