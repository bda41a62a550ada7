// Behaviour shared by every page, kept out of the HTML so that the Content-Security-Policy
// can forbid inline scripts and handlers (see portal/csp.py).
(function () {
  "use strict";

  // <select data-autosubmit>: choosing an option submits its form (org switch, filters).
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });

  // <button class="copy" data-target="ID">: copies the text of element ID.
  document.querySelectorAll("button.copy[data-target]").forEach((button) => {
    button.addEventListener("click", async () => {
      const code = document.getElementById(button.dataset.target).textContent;
      await navigator.clipboard.writeText(code);
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = "Copy"; }, 1500);
    });
  });
})();
