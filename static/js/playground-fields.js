// The playground's inputs: one control per field of the model's input schema (sliders
// with their values for the sampling knobs, the rarer ones folded under "Advanced"; an
// image field's drop zone is playground-image.js), the input they make, and errors shown
// at the field they are about, in words.
(function () {
  "use strict";

  // The fields a person comes to fill in, shown first and large.
  const MAIN = ["image", "prompt", "text", "input", "labels"];
  // Shown as sliders (with a number box) whenever the schema bounds them.
  const SLIDERS = ["max_new_tokens", "temperature", "top_p", "min_score"];
  // PostgreSQL's jsonb does not keep the schema's key order, so the form orders fields
  // itself: main inputs, then sliders, then the rest alphabetically.
  const ORDER = [...MAIN, ...SLIDERS, "stop", "seed"];
  // Labels that say more than the schema's titles do, for this page.
  const LABELS = { input: "Texts", max_new_tokens: "Max tokens" };
  // One item of a list field, as an error message names it ("Text 2").
  const ITEM_LABELS = { input: "Text", labels: "Label", stop: "Stop sequence", messages: "Message" };

  function rank(name) {
    const index = ORDER.indexOf(name);
    return index === -1 ? ORDER.length : index;
  }

  // What kind of control a schema property gets.
  function kindOf(prop) {
    if (Array.isArray(prop.enum)) return "enum";
    // models_hub/schemas.py's image_property: a data: URI or file:<id>.
    if (typeof prop.contentMediaType === "string" && prop.contentMediaType.startsWith("image/")) return "image";
    if (Array.isArray(prop.anyOf)) {
      const types = prop.anyOf.map((option) => option.type);
      // embeddings' input: one text or a list of them; one per line either way.
      if (types.includes("string") && types.includes("array")) return "text-or-list";
    }
    const type = Array.isArray(prop.type) ? (prop.type.includes("array") ? "array" : prop.type[0]) : prop.type;
    if (type === "array") return "list";
    if (type === "integer" || type === "number" || type === "boolean") return type;
    return "text";
  }

  function labelOf(name, prop) {
    return LABELS[name] || prop.title || name.replace(/_/g, " ");
  }

  function lowerBound(prop, step) {
    if (prop.minimum !== undefined) return prop.minimum;
    if (prop.exclusiveMinimum !== undefined) return prop.exclusiveMinimum + step;
    return undefined;
  }

  function element(tag, attributes, text) {
    const el = document.createElement(tag);
    Object.entries(attributes || {}).forEach(([key, value]) => {
      if (value !== undefined && value !== null) el.setAttribute(key, value);
    });
    if (text !== undefined) el.textContent = text;
    return el;
  }

  // The wrapper every field shares: label, control, hint, and a slot for its error.
  function wrap(field, control, extraClass) {
    const box = element("div", { class: "field" + (extraClass ? " " + extraClass : "") });
    const label = element("label", { for: control.id }, field.label);
    box.append(label, control);
    // An image's schema description speaks of data: URIs and file ids: the API's view.
    const about = field.kind === "image" ? "PNG, JPEG or WebP, at most 10 MiB." : field.prop.description;
    const hint = [about, field.listHint].filter(Boolean).join(" ");
    if (hint) box.append(element("small", { class: "hint" }, hint));
    box.append(element("small", { class: "field-error", hidden: "" }));
    return box;
  }

  function textControl(field) {
    const rows = field.main ? 4 : 2;
    return element("textarea", { id: field.id, name: field.name, rows });
  }

  function numberControl(field) {
    const step = field.kind === "integer" ? 1 : "any";
    return element("input", {
      type: "number", id: field.id, name: field.name, step,
      min: lowerBound(field.prop, 0), max: field.prop.maximum,
    });
  }

  // A range and a number box that follow each other: the value is always visible and can
  // be typed exactly.
  function sliderField(field) {
    const step = field.kind === "integer" ? 1 : 0.01;
    const min = lowerBound(field.prop, step);
    const box = numberControl(field);
    box.classList.add("slider-value");
    const range = element("input", {
      type: "range", id: field.id + "-range", min, max: field.prop.maximum, step,
      "aria-label": field.label, tabindex: "-1",
    });
    range.addEventListener("input", () => { box.value = range.value; });
    box.addEventListener("input", () => { range.value = box.value; });
    field.range = range;
    const container = wrap(field, box, "slider-field");
    box.after(range); // label and value on one line, the range under them
    return { container, control: box };
  }

  function enumControl(field) {
    const select = element("select", { id: field.id, name: field.name });
    select.append(element("option", { value: "" }, "(model default)"));
    field.prop.enum.forEach((value) => select.append(element("option", { value }, String(value))));
    return select;
  }

  function buildField(field) {
    const bounded = field.prop.maximum !== undefined &&
      lowerBound(field.prop, 1) !== undefined;
    if (SLIDERS.includes(field.name) && bounded && (field.kind === "integer" || field.kind === "number")) {
      return sliderField(field);
    }
    let control;
    if (field.kind === "image") control = element("input", { type: "file", id: field.id, name: field.name });
    else if (field.kind === "boolean") control = element("input", { type: "checkbox", id: field.id, name: field.name });
    else if (field.kind === "integer" || field.kind === "number") control = numberControl(field);
    else if (field.kind === "enum") control = enumControl(field);
    else control = textControl(field);
    return { container: wrap(field, control, field.kind === "image" ? "image-field" : ""), control };
  }

  function fill(field, value) {
    if (value === undefined || value === null) return;
    if (field.image) {
      field.image.fill(value);
      return;
    }
    const el = field.control;
    if (el.type === "checkbox") el.checked = Boolean(value);
    else el.value = Array.isArray(value) ? value.join("\n") : String(value);
    if (field.range) field.range.value = el.value;
  }

  function lines(text) {
    return text.split("\n").map((line) => line.trim()).filter(Boolean);
  }

  // The value a field adds to the input, or undefined to leave the field out.
  function read(field) {
    if (field.image) return field.image.value();
    const el = field.control;
    if (field.defaultText !== undefined && String(el.type === "checkbox" ? el.checked : el.value) === field.defaultText) {
      return undefined;
    }
    if (el.type === "checkbox") return el.checked;
    if (el.value.trim() === "") return undefined;
    if (field.kind === "integer" || field.kind === "number") return Number(el.value);
    if (field.kind === "list") return lines(el.value);
    if (field.kind === "text-or-list") {
      const texts = lines(el.value);
      return texts.length === 1 ? texts[0] : texts;
    }
    if (field.kind === "enum") {
      const match = field.prop.enum.find((value) => String(value) === el.value);
      return match === undefined ? el.value : match;
    }
    return el.value;
  }

  // --- Errors, in words --------------------------------------------------------------

  function fieldError(field, message) {
    const slot = field.container.querySelector(".field-error");
    slot.id = slot.id || field.id + "-error";
    slot.textContent = message;
    slot.hidden = false;
    field.control.setAttribute("aria-invalid", "true");
    field.control.setAttribute("aria-describedby", slot.id);
    const fold = field.container.closest("details");
    if (fold) fold.open = true;
  }

  function clearError(field) {
    const slot = field.container.querySelector(".field-error");
    if (slot) slot.hidden = true;
    field.control.removeAttribute("aria-invalid");
  }

  // "input.input[1]" -> "Text 2", "input.max_new_tokens" -> "Max tokens"; API.md's error
  // `param`s and messages name fields by their path in the JSON input.
  function describePath(fields, path) {
    const parts = path.match(/\.[A-Za-z_]\w*|\[\d+\]/g) || [];
    if (!parts.length) return "The input";
    const name = parts[0].slice(1);
    const field = fields.get(name);
    const index = parts[1] && parts[1].startsWith("[") ? Number(parts[1].slice(1, -1)) : null;
    if (index !== null) return (ITEM_LABELS[name] || (field ? field.label : name)) + " " + (index + 1);
    return field ? field.label : name.replace(/_/g, " ");
  }

  function words(fields, message) {
    const text = String(message || "").replace(/\binput((?:\.[A-Za-z_]\w*|\[\d+\])*)/g, (whole, path, offset) => {
      const label = describePath(fields, path);
      // Mid-sentence, "The input" reads "the input"; field names keep their capital.
      return offset > 0 && label.startsWith("The ") ? "the " + label.slice(4) : label;
    });
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  // --- The form -----------------------------------------------------------------------

  // Builds the controls into `visible` and `advanced` (a <details>, shown only when it
  // holds something) and returns what the playground needs to use them. `values` fill the
  // form (the example, or a prediction's input); `defaults` fill what values leave out.
  // `skip` names fields drawn elsewhere (the chat's message thread).
  function build({ schema, values, defaults, visible, advanced, skip }) {
    const properties = schema.properties || {};
    const required = new Set(schema.required || []);
    const fields = new Map();
    Object.keys(properties)
      .filter((name) => !skip.includes(name) && properties[name].type !== "object")
      .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))
      .forEach((name) => {
        const prop = properties[name];
        const kind = kindOf(prop);
        const field = {
          name, prop, kind, id: "pg-" + name, label: labelOf(name, prop),
          main: MAIN.includes(name), required: required.has(name),
          listHint: kind === "list" || kind === "text-or-list" ? "One per line." : "",
        };
        const built = buildField(field);
        field.container = built.container;
        field.control = built.control;
        if (kind === "image") {
          field.image = window.PlaygroundImage.attach(field, (message) => {
            if (message) fieldError(field, message);
            else clearError(field);
          });
        }
        const shown = field.main || field.required || SLIDERS.includes(name);
        (shown ? visible : advanced).append(field.container);
        const given = values[name];
        const fallback = defaults[name] !== undefined ? defaults[name] : prop.default;
        fill(field, given !== undefined ? given : fallback);
        // A value shown only because it is the default is left out of the input, so the
        // model's own default applies (echo's max tokens is "up to the context", which
        // sent as a number overflows it); the input's values and edits are always sent.
        if (given === undefined && fallback !== undefined) {
          field.defaultText = String(field.control.type === "checkbox" ? field.control.checked : field.control.value);
        }
        field.control.addEventListener("input", () => clearError(field));
        fields.set(name, field);
      });
    const fold = advanced.closest("details");
    if (fold) fold.hidden = advanced.children.length === 0;

    return {
      fields,
      // Registers a control drawn elsewhere (the chat's composer) for errors about `name`.
      alias(name, control, label) {
        const container = control.closest(".field");
        fields.set(name, { name, control, label, container, id: control.id, alias: true });
      },
      collect() {
        const input = {};
        fields.forEach((field) => {
          if (field.alias) return;
          const value = read(field);
          if (value !== undefined) input[field.name] = value;
        });
        return input;
      },
      // Required fields the form leaves empty, each marked; true when there are none.
      checkRequired(input) {
        let ok = true;
        fields.forEach((field) => {
          if (!field.alias && field.required && input[field.name] === undefined) {
            fieldError(field, field.image ? "Choose an image first." : "Fill in " + field.label.toLowerCase() + ".");
            ok = false;
          }
        });
        return ok;
      },
      // Shows an API error at its field; false when no field of the form is its subject.
      showError(param, message) {
        const match = /^input\.([A-Za-z_]\w*)/.exec(param || "");
        const field = match && fields.get(match[1]);
        if (!field) return false;
        fieldError(field, words(fields, message));
        return true;
      },
      markError(name, message) {
        fieldError(fields.get(name), message);
      },
      clearErrors() {
        fields.forEach(clearError);
      },
      words(message) {
        return words(fields, message);
      },
    };
  }

  window.PlaygroundFields = { build };
})();
