// The access-policy form's Cedar editor (CodeMirror 6), built with esbuild into
// policies/static/policies/policy-editor.bundle.js. The textarea stays the form field: the editor
// writes every change back to it (and follows it when something else changes it). Validation runs
// in the browser with cedar-wasm against the server's schema (the page embeds it); the server
// validates again on save.
import { autocompletion } from "@codemirror/autocomplete";
import { HighlightStyle, StreamLanguage, syntaxHighlighting } from "@codemirror/language";
import { linter, lintGutter } from "@codemirror/lint";
import { tags } from "@lezer/highlight";
import init, { formatPolicies, schemaToJson, validate } from "@cedar-policy/cedar-wasm/web";
import { EditorView, basicSetup } from "codemirror";

const KEYWORDS = new Set([
  "permit", "forbid", "when", "unless", "principal", "action", "resource", "context",
  "in", "is", "has", "like", "if", "then", "else", "true", "false",
]);

const cedarLanguage = StreamLanguage.define({
  token(stream) {
    if (stream.eatSpace()) return null;
    if (stream.match("//")) { stream.skipToEnd(); return "comment"; }
    if (stream.match(/^"(?:[^"\\]|\\.)*"?/)) return "string";
    if (stream.match(/^@\w+/)) return "meta";
    if (stream.match(/^\?(principal|resource)\b/)) return "variableName.special";
    if (stream.match(/^-?\d+/)) return "number";
    if (stream.match(/^[A-Za-z_]\w*(?=::)/)) return "typeName";
    const word = stream.match(/^[A-Za-z_]\w*/);
    if (word) return KEYWORDS.has(word[0]) ? "keyword" : "variableName";
    stream.next();
    return "operator";
  },
});

const highlight = HighlightStyle.define([
  { tag: tags.keyword, color: "#7c3aed", fontWeight: "bold" },
  { tag: tags.string, color: "#047857" },
  { tag: tags.comment, color: "#6b7280", fontStyle: "italic" },
  { tag: tags.typeName, color: "#b45309" },
  { tag: tags.number, color: "#1d4ed8" },
  { tag: tags.meta, color: "#9d174d" },
]);

function isTemplate(text) {
  return /\?(principal|resource)\b/.test(text);
}

function lineColumn(doc, offset) {
  const line = doc.lineAt(Math.min(Math.max(offset, 0), doc.length));
  return { line: line.number, column: offset - line.from + 1 };
}

function problems(text, schema) {
  const policies = isTemplate(text) ? { templates: { policy: text } } : { staticPolicies: text };
  const answer = validate({ schema, policies, validationSettings: { mode: "strict" } });
  if (answer.type === "failure") return answer.errors;
  return answer.validationErrors.map((found) => found.error);
}

// Entity types, actions and attributes from the schema, for completion.
function vocabulary(schema) {
  const words = [];
  const answer = schemaToJson(schema);
  const json = answer.type === "success" ? answer.json : {};
  for (const namespace of Object.values(json)) {
    for (const [name, entity] of Object.entries(namespace.entityTypes || {})) {
      words.push({ label: name, type: "type", detail: "entity type" });
      const attributes = (entity.shape && entity.shape.attributes) || {};
      for (const attribute of Object.keys(attributes)) {
        words.push({ label: attribute, type: "property", detail: `${name} attribute` });
      }
    }
    for (const action of Object.keys(namespace.actions || {})) {
      words.push({ label: `Action::"${action}"`, type: "function", detail: "action" });
    }
  }
  for (const keyword of KEYWORDS) words.push({ label: keyword, type: "keyword" });
  for (const key of ["client_ip", "token_scopes", "auth_method", "now"]) {
    words.push({ label: key, type: "property", detail: "context attribute" });
  }
  const seen = new Set();
  return words.filter((word) => !seen.has(word.label + word.type) && seen.add(word.label + word.type));
}

function setUp(textarea, schema) {
  const status = document.createElement("div");
  status.className = "policy-editor-status";
  status.setAttribute("aria-live", "polite");
  const formatButton = document.createElement("button");
  formatButton.type = "button";
  formatButton.className = "button policy-format";
  formatButton.textContent = "Format";
  const words = vocabulary(schema);

  function show(errors, doc) {
    status.replaceChildren();
    status.classList.toggle("has-errors", errors.length > 0);
    if (!errors.length) { status.textContent = "Valid against the schema."; return; }
    for (const error of errors) {
      const item = document.createElement("div");
      item.className = "policy-editor-error";
      const where = (error.sourceLocations || [])[0];
      const at = where ? lineColumn(doc, where.start) : null;
      // One policy is validated, as "policy0": its name says nothing here.
      const message = error.message.replace(/^for policy `[^`]*`, /, "");
      item.textContent = (at ? `line ${at.line}, column ${at.column}: ` : "") + message +
        (error.help ? ` (${error.help})` : "");
      status.append(item);
    }
  }

  const view = new EditorView({
    doc: textarea.value,
    extensions: [
      basicSetup,
      cedarLanguage,
      syntaxHighlighting(highlight),
      lintGutter(),
      linter((editor) => {
        const doc = editor.state.doc;
        const text = doc.toString();
        if (!text.trim()) { show([], doc); return []; }
        const errors = problems(text, schema);
        show(errors, doc);
        return errors.map((error) => {
          const where = (error.sourceLocations || [])[0] || { start: 0, end: doc.length };
          const from = Math.min(where.start, doc.length);
          const to = Math.min(Math.max(where.end, from), doc.length);
          return { from, to, severity: "error", message: error.message.replace(/^for policy `[^`]*`, /, "") };
        });
      }, { delay: 300 }),
      autocompletion({
        override: [(context) => {
          const word = context.matchBefore(/[\w:"]+/);
          if (!word || (word.from === word.to && !context.explicit)) return null;
          return { from: word.from, options: words, validFor: /^[\w:"]*$/ };
        }],
      }),
      EditorView.updateListener.of((update) => {
        if (update.docChanged) {
          textarea.value = update.state.doc.toString();
        }
      }),
      EditorView.contentAttributes.of({ "aria-label": "Policy text (Cedar)" }),
      // CodeMirror's <style> elements carry the page's CSP nonce (style-src has no 'unsafe-inline').
      EditorView.cspNonce.of(document.querySelector('meta[name="csp-nonce"]')?.content || ""),
    ],
  });

  formatButton.addEventListener("click", () => {
    const answer = formatPolicies({ policyText: view.state.doc.toString(), lineWidth: 100, indentWidth: 2 });
    if (answer.type === "success") {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: answer.formatted_policy.trim() } });
    } else {
      show(answer.errors, view.state.doc);
    }
  });
  // Something else changed the textarea (a script, a test): follow it.
  textarea.addEventListener("input", () => {
    if (textarea.value !== view.state.doc.toString()) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: textarea.value } });
    }
  });

  textarea.classList.add("policy-editor-source");
  textarea.setAttribute("tabindex", "-1");
  textarea.setAttribute("aria-hidden", "true");
  const box = document.createElement("div");
  box.className = "policy-editor";
  textarea.after(box);
  box.append(view.dom, formatButton, status);
  // The principal picker (policy_text.js) inserts through this.
  textarea.policyEditor = {
    view,
    insert(text) {
      const { from, to } = view.state.selection.main;
      view.dispatch({ changes: { from, to, insert: text }, selection: { anchor: from + text.length } });
      view.focus();
    },
    select(offset) {
      view.dispatch({ selection: { anchor: offset } });
    },
  };
  box.dataset.ready = "true";
}

async function start() {
  const schemaElement = document.getElementById("policy-schema");
  const textareas = document.querySelectorAll("textarea.policy-text");
  if (!schemaElement || !textareas.length) return;
  const schema = JSON.parse(schemaElement.textContent);
  const wasm = document.querySelector("[data-cedar-wasm]").dataset.cedarWasm;
  await init({ module_or_path: wasm });
  textareas.forEach((textarea) => setUp(textarea, schema));
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
