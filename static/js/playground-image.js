// The playground's image field (OCR, object detection): a drop zone that takes an image by
// click, drag and drop or paste (Ctrl+V), checks it here first (type, size, that it
// decodes), shows it, and gives the input a data: URI, which the portal validates again
// and stores as a file. A prediction's `file:<id>` ("Open in playground") is read back from
// the org's file page and becomes a data: URI the same way, so that Run works after the
// file itself has expired.
(function () {
  "use strict";

  // API.md "Files": what the portal accepts.
  const TYPES = { "image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP" };
  const MAX_BYTES = 10 * 1024 * 1024;
  const FILE_REF = /^file:([A-Za-z0-9]+)$/;

  function element(tag, attributes, text) {
    const el = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([key, value]) => el.setAttribute(key, value));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function size(bytes) {
    if (bytes < 1024 * 1024) return Math.max(1, Math.round(bytes / 1024)) + " KiB";
    return (bytes / (1024 * 1024)).toFixed(1) + " MiB";
  }

  // Where the browser reads one of the org's files (inference/views.py, file_content).
  function fileUrl(value) {
    const match = FILE_REF.exec(value || "");
    return match ? "/files/" + match[1] + "/" : null;
  }

  // An error in words for a file the portal would refuse, or null.
  function problem(file) {
    if (!TYPES[file.type]) {
      const what = file.type ? " (it is " + file.type + ")" : "";
      return (file.name || "This file") + " is not a PNG, JPEG or WebP image" + what + ".";
    }
    if (file.size > MAX_BYTES) {
      return "This image is " + size(file.size) + ", over the 10 MiB limit: choose a smaller one.";
    }
    return null;
  }

  function dataUri(blob) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(blob);
    });
  }

  // Builds the zone into `field.container` beside `field.control` (a file input); `report`
  // shows an error at the field (null clears it). Returns {value, fill}.
  function attach(field, report) {
    const input = field.control;
    input.classList.add("visually-hidden");
    input.accept = Object.keys(TYPES).join(",");
    const zone = element("label", { class: "drop-zone", for: input.id });
    const preview = element("img", { class: "drop-preview", alt: "The chosen image", hidden: "" });
    const prompt = element("span", { class: "drop-prompt" });
    prompt.append("Drop an image here, paste one (Ctrl+V), or ", element("u", {}, "choose a file"), ".");
    const meta = element("span", { class: "drop-meta small muted", "aria-live": "polite" });
    zone.append(preview, prompt, meta);
    input.after(zone);

    let value; // the data: URI the input sends, once an image is accepted
    let loading = 0; // the latest image asked for; an older one finishing late is dropped

    function reset(text) {
      value = undefined;
      preview.hidden = true;
      preview.removeAttribute("src");
      meta.textContent = text || "";
      zone.classList.remove("has-image");
    }

    async function show(uri, name, bytes, asked) {
      const probe = new Image();
      probe.src = uri;
      try {
        await probe.decode();
      } catch {
        if (asked === loading) {
          reset();
          report((name || "This file") + " could not be read as an image: choose another.");
        }
        return;
      }
      if (asked !== loading) return;
      value = uri;
      preview.src = uri;
      preview.hidden = false;
      zone.classList.add("has-image");
      meta.textContent = [name, probe.naturalWidth + " × " + probe.naturalHeight + " px", size(bytes)]
        .filter(Boolean).join(" · ");
      report(null);
    }

    async function take(file) {
      const asked = ++loading;
      const refused = problem(file);
      if (refused) {
        reset();
        report(refused);
        return;
      }
      const uri = await dataUri(file).catch(() => null);
      if (uri) show(uri, file.name, file.size, asked);
      else if (asked === loading) report((file.name || "This file") + " could not be read: choose it again.");
    }

    // A prediction's input: its data: URI, or its stored file read back.
    async function fill(given) {
      if (typeof given !== "string" || !given) return;
      const asked = ++loading;
      const url = fileUrl(given);
      if (!url) {
        show(given, "", Math.round((given.length - given.indexOf(",") - 1) * 0.75), asked);
        return;
      }
      reset("Loading the image…");
      const response = await fetch(url, { credentials: "same-origin" }).catch(() => null);
      if (asked !== loading) return;
      if (!response || !response.ok) {
        reset();
        report("The image of that prediction is no longer stored: choose one.");
        return;
      }
      const blob = await response.blob();
      show(await dataUri(blob), "", blob.size, asked);
    }

    input.addEventListener("change", () => {
      if (input.files.length) take(input.files[0]);
      input.value = ""; // choosing the same file again still counts as a choice
    });
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const file = event.dataTransfer.files[0];
      if (file) take(file);
    });
    // Ctrl+V anywhere on the page: a copied image (a screenshot) is the image to read.
    // Pasted text goes where it was pasted, as always.
    document.addEventListener("paste", (event) => {
      const file = event.clipboardData && event.clipboardData.files[0];
      if (!file) return;
      event.preventDefault();
      take(file);
    });

    return { value: () => value, fill };
  }

  window.PlaygroundImage = { attach, fileUrl };
})();
