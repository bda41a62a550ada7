// Behaviour shared by every page, kept out of the HTML so that the Content-Security-Policy
// can forbid inline scripts and handlers (see portal/csp.py).
(function () {
  "use strict";

  // <select data-autosubmit>: choosing an option submits its form (org switch, filters).
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });

  // The header's Menu button (templates/base.html): at phone width the CSS folds the
  // links behind it while the header has .menu-closed; without this script the button
  // stays hidden and the links simply show.
  document.querySelectorAll("button.menu-toggle[aria-controls]").forEach((button) => {
    const header = button.closest(".topbar");
    const setOpen = (open) => {
      button.setAttribute("aria-expanded", String(open));
      header.classList.toggle("menu-closed", !open);
    };
    setOpen(false);
    button.hidden = false;
    button.addEventListener("click", () => {
      setOpen(button.getAttribute("aria-expanded") !== "true");
    });
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        button.focus();
      }
    });
  });

  // <button class="copy" data-target="ID">: copies the text of element ID.
  document.querySelectorAll("button.copy[data-target]").forEach((button) => {
    const label = button.textContent; // "Copy", or what it copies: "Copy as curl"
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
      setTimeout(() => { button.textContent = label; }, 2500);
    });
  });

  // <time datetime="ISO" data-local> (the |when filter): the same "YYYY-MM-DD HH:MM ZONE"
  // layout as the server's, in the browser's own zone, whose short name is always shown.
  const pad = (n) => String(n).padStart(2, "0");
  const zoneName = (date) => {
    const part = new Intl.DateTimeFormat(undefined, { timeZoneName: "short" })
      .formatToParts(date).find((p) => p.type === "timeZoneName");
    return part ? part.value : "";
  };
  document.querySelectorAll("time[data-local][datetime]").forEach((element) => {
    const date = new Date(element.getAttribute("datetime"));
    if (Number.isNaN(date.getTime())) return;
    const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
    const clock = `${pad(date.getHours())}:${pad(date.getMinutes())}`;
    element.textContent = `${day} ${clock} ${zoneName(date)}`.trim();
    element.title = element.getAttribute("datetime");
  });
})();
