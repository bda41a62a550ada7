// A prediction's page: the server shows the output as plain text (or a summary); here
// the playground's own renderers (markdown.js, playground-results.js) draw it the way
// the playground did when it ran.
(function () {
  "use strict";

  // Model text, and a chat's earlier assistant turns, as sanitized Markdown.
  document.querySelectorAll("[data-markdown]").forEach((element) => {
    window.PortalMarkdown.render(element, element.textContent);
    element.classList.remove("plain-text");
  });

  // Embeddings (summary, similarities, Copy / Download) and classifier bars.
  const result = document.getElementById("output-rendered");
  const output = document.getElementById("prediction-output-data");
  const input = document.getElementById("prediction-input-data");
  if (result && output && input) {
    const prediction = { output: JSON.parse(output.textContent) };
    window.PlaygroundResults.render(result, result.dataset.task, prediction, JSON.parse(input.textContent));
    result.classList.add("rendered");
  }
})();
