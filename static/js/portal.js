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
      const target = document.getElementById(button.dataset.target);
      try {
        await navigator.clipboard.writeText(target.textContent);
        button.textContent = "Copied";
      } catch {
        // No clipboard API (a plain-http origin) or no permission: select the text so
        // that the keyboard's copy takes it, rather than leave the click doing nothing.
        window.getSelection().selectAllChildren(target);
        button.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 2500);
    });
  });
})();
