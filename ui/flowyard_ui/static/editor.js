/* Flowyard's code editor: CodeMirror 6 (static/vendor/codemirror.min.js, rebuilt by
   bin/build-editor) over a textarea[data-code-editor]. The textarea stays the form field:
   every edit is written back into it and announced with an `input` event, so htmx's
   check-as-you-type, the form view, the diff and saving work as they do without the
   editor. If this module fails to load, the page keeps its plain textarea.

   - YAML highlighting; JMESPath (values of options the schema describes as JMESPath,
     `keys:`) and Jinja (`{{ }}`, `{% %}`) highlighted inside it.
   - Completion and hover help for steps, connectors and their options, read from the
     flow JSON Schema the server serves (data-schema, `flowyard schema`).
   - Problems underlined at their place: the server's check answer (flows/issues.html)
     carries them as JSON (#issue-data); a did-you-mean comes with a one-click fix. */
import * as CM from "./vendor/codemirror.min.js";

const views = {};          // textarea id -> {view, area}
let schemaPromise = null;  // the JSON Schema, fetched once per page

// ---- the schema ------------------------------------------------------------------------
function loadSchema(url) {
  if (!schemaPromise) {
    schemaPromise = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }
  return schemaPromise;
}

function deref(schema, node) {
  let seen = 0;
  while (node && node.$ref && seen++ < 20) {
    const name = node.$ref.replace("#/$defs/", "");
    node = schema.$defs ? schema.$defs[name] : null;
  }
  return node || {};
}

/* The object schemas a node may be (oneOf/anyOf/allOf flattened, $ref followed). */
function variants(schema, node, out = []) {
  node = deref(schema, node);
  for (const key of ["oneOf", "anyOf", "allOf"]) {
    if (Array.isArray(node[key])) { node[key].forEach((n) => variants(schema, n, out)); }
  }
  if (node.properties || node.items || node.type || node.enum) { out.push(node); }
  return out;
}

function rootFor(schema, text) {
  const kind = (text.match(/^kind:\s*["']?([A-Za-z]+)/m) || [])[1] || "Flow";
  for (const branch of schema.allOf || []) {
    const c = branch.if && branch.if.properties && branch.if.properties.kind;
    if (c && c.const === kind) { return deref(schema, branch.then); }
  }
  return deref(schema, { $ref: "#/$defs/Flow" });
}

/* Follow a path of keys ("[]" for a list item) from the root. */
function resolve(schema, root, path) {
  let nodes = [root];
  for (const step of path) {
    const next = [];
    for (const n of nodes) {
      for (const v of variants(schema, n)) {
        if (step === "[]") { if (v.items) { next.push(v.items); } }
        else if (v.properties && v.properties[step]) { next.push(v.properties[step]); }
        else if (v.additionalProperties && typeof v.additionalProperties === "object") { next.push(v.additionalProperties); }
      }
    }
    nodes = next;
    if (!nodes.length) { break; }
  }
  return nodes;
}

function typeText(schema, node) {
  const vs = variants(schema, node).filter((v) => v.type !== "null");
  const texts = vs.map((v) => {
    if (v.enum) { return v.enum.map((e) => JSON.stringify(e)).join(" | "); }
    if (v.const !== undefined) { return JSON.stringify(v.const); }
    if (v.type === "array") { return "list"; }
    if (v.properties) { return "options"; }
    return Array.isArray(v.type) ? v.type.join(" or ") : v.type || "";
  });
  return [...new Set(texts.filter(Boolean))].join(" or ");
}

/* What a key may be inside the containers `nodes`: name -> {description, type, isKind}. */
function keysOf(schema, nodes) {
  const found = new Map();
  for (const n of nodes) {
    for (const v of variants(schema, n)) {
      const required = v.required || [];
      for (const [name, prop] of Object.entries(v.properties || {})) {
        if (found.has(name)) { continue; }
        const isKind = v.title === name && required.includes(name);
        const description = isKind ? v.description || "" : deref(schema, prop).description || firstDescription(schema, prop);
        found.set(name, { description, type: isKind ? "" : typeText(schema, prop), isKind, prop });
      }
    }
  }
  return found;
}
function firstDescription(schema, prop) {
  for (const v of variants(schema, prop)) { if (v.description) { return v.description; } }
  return "";
}

function defaultText(schema, prop) {
  const p = deref(schema, prop);
  return "default" in p && p.default !== null ? JSON.stringify(p.default) : "";
}

// ---- where the cursor is in the YAML -----------------------------------------------------
const KEY_LINE = /^(\s*)((?:-\s+)*)(["']?)([A-Za-z0-9_.$\-]+)\3\s*:(?=\s|$)/;

function lineShape(text) {
  const m = text.match(KEY_LINE);
  const lead = text.match(/^(\s*)((?:-\s+)*)/);
  const dashes = [];
  let col = lead[1].length;
  for (const d of lead[2].match(/-\s+/g) || []) { dashes.push(col); col += d.length; }
  return { dashes, key: m ? m[4] : null, keyCol: col, blank: /^\s*(#.*)?$/.test(text) };
}

/* The path of keys ("[]" for list items) of the block mapping a key at column `col` on
   line `lineNo` belongs to, from the lines above. `dashes`: the current line's "- ". */
function blockPath(doc, lineNo, col, dashes) {
  const path = [];
  let level = col;
  for (let i = dashes.length - 1; i >= 0; i--) { path.unshift("[]"); level = dashes[i]; }
  for (let n = lineNo - 1; n >= 1 && level > 0; n--) {
    const shape = lineShape(doc.line(n).text);
    if (shape.blank) { continue; }
    if (shape.key !== null && shape.keyCol < level) {
      path.unshift(shape.key);
      level = shape.keyCol;
    } else if (shape.key === null && shape.keyCol < level && !shape.dashes.length) {
      return null;  // inside a block scalar or other text: no completion
    }
    const outer = shape.dashes.filter((d) => d < level);
    for (let i = outer.length - 1; i >= 0; i--) { path.unshift("[]"); level = outer[i]; }
  }
  return path;
}

/* Flow collections open on the current line before `ch` ({a: 1, b|): the keys and "[]"
   they add to the path, and whether the cursor is where a key goes. */
function flowPath(text) {
  const stack = [];
  let quote = null;
  let lastKey = null;
  let segment = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) { if (c === quote) { quote = null; } segment += c; continue; }
    if (c === '"' || c === "'") { quote = c; segment += c; continue; }
    if (c === "{" || c === "[") {
      stack.push({ open: c, key: lastKey });
      lastKey = null;
      segment = "";
    } else if (c === "}" || c === "]") {
      stack.pop();
      segment = "";
    } else if (c === ",") {
      segment = "";
      lastKey = null;
    } else if (c === ":" && /^\s*[A-Za-z0-9_.$\-]+\s*$/.test(segment)) {
      lastKey = segment.trim();
      segment = "";
    } else { segment += c; }
  }
  return { stack, lastKey, segment, quote };
}

/* The completion context at `pos`: {path, key: true, from} where a key is typed, or
   {path, valueOf, from} where the value of `valueOf` is typed; null elsewhere. */
function contextAt(state, pos) {
  const line = state.doc.lineAt(pos);
  const before = line.text.slice(0, pos - line.from);
  if (/#/.test(before.replace(/(["'])(?:(?!\1).)*\1/g, ""))) { return null; }  // in a comment
  const word = before.match(/[A-Za-z0-9_.$\-]*$/)[0];
  const from = pos - word.length;
  const lead = before.match(/^(\s*)((?:-\s+)*)/);
  const shape = lineShape(before);
  if (lead[0].length === before.length - word.length) {  // only indentation and dashes before
    const path = blockPath(state.doc, line.number, shape.keyCol, shape.dashes);
    return path ? { path, key: true, from } : null;
  }
  const m = before.match(KEY_LINE);
  if (!m) { return null; }
  const base = blockPath(state.doc, line.number, shape.keyCol, shape.dashes);
  if (!base) { return null; }
  const rest = before.slice(m[0].length);
  const flow = flowPath(rest);
  if (flow.quote) { return null; }
  if (!flow.stack.length) {
    return /^\s+[A-Za-z0-9_.$\-]*$/.test(rest) ? { path: base, valueOf: m[4], from } : null;
  }
  const path = [...base, m[4]];
  flow.stack.forEach((s, i) => {
    if (i > 0 && s.key) { path.push(s.key); }
    if (s.open === "[") { path.push("[]"); }
  });
  if (flow.lastKey === null && /^\s*[A-Za-z0-9_.$\-]*$/.test(flow.segment)) { return { path, key: true, from }; }
  if (flow.lastKey !== null && /^\s*[A-Za-z0-9_.$\-]*$/.test(flow.segment)) { return { path, valueOf: flow.lastKey, from }; }
  return null;
}

function infoNode(text) {
  const el = document.createElement("div");
  el.className = "cm-flowyard-info";
  el.textContent = text;
  return el;
}

function schemaCompletion(area) {
  return async (context) => {
    const schema = await loadSchema(area.dataset.schema);
    if (!schema) { return null; }
    const where = contextAt(context.state, context.pos);
    if (!where) { return null; }
    const word = context.state.sliceDoc(where.from, context.pos);
    if (!word && !context.explicit && where.key) {
      // offer the names as soon as a new list item or key is started
      const prev = context.state.sliceDoc(Math.max(0, context.pos - 2), context.pos);
      if (prev !== "- ") { return null; }
    }
    const root = rootFor(schema, context.state.doc.toString());
    if (where.key) {
      const keys = keysOf(schema, resolve(schema, root, where.path));
      if (!keys.size) { return null; }
      const options = [...keys].map(([name, k]) => ({
        label: name,
        type: k.isKind ? "class" : "property",
        detail: k.isKind ? (where.path[0] === "steps" ? "step" : "connector") : k.type || "",
        info: k.description ? () => infoNode(k.description + (defaultText(schema, k.prop) ? `\ndefault: ${defaultText(schema, k.prop)}` : "")) : undefined,
        apply: name + ": ",
        boost: k.isKind ? 1 : 0,
      }));
      return { from: where.from, options, validFor: /^[A-Za-z0-9_.$\-]*$/ };
    }
    const nodes = resolve(schema, root, [...where.path, where.valueOf]);
    const values = new Set();
    for (const n of nodes) {
      for (const v of variants(schema, n)) {
        (v.enum || []).forEach((e) => values.add(String(e)));
        if (v.type === "boolean") { values.add("true"); values.add("false"); }
        if (v.const !== undefined) { values.add(String(v.const)); }
      }
    }
    if (!values.size) { return null; }
    return { from: where.from, options: [...values].map((v) => ({ label: v, type: "enum" })), validFor: /^[A-Za-z0-9_.$\-]*$/ };
  };
}

function schemaHover(area) {
  return CM.hoverTooltip(async (view, pos) => {
    const line = view.state.doc.lineAt(pos);
    const text = line.text;
    let start = pos - line.from;
    let end = start;
    while (start > 0 && /[A-Za-z0-9_.$\-]/.test(text[start - 1])) { start--; }
    while (end < text.length && /[A-Za-z0-9_.$\-]/.test(text[end])) { end++; }
    if (start === end || !/^\s*:/.test(text.slice(end))) { return null; }  // keys only
    const schema = await loadSchema(area.dataset.schema);
    if (!schema) { return null; }
    const name = text.slice(start, end);
    const where = contextAt(view.state, line.from + start);
    if (!where || !where.key) { return null; }
    const root = rootFor(schema, view.state.doc.toString());
    const k = keysOf(schema, resolve(schema, root, where.path)).get(name);
    if (!k) { return null; }
    return {
      pos: line.from + start,
      end: line.from + end,
      above: true,
      create() {
        const dom = document.createElement("div");
        dom.className = "cm-flowyard-hover";
        const head = document.createElement("strong");
        head.textContent = name;
        dom.appendChild(head);
        if (k.type) { dom.appendChild(document.createTextNode(` (${k.type})`)); }
        if (k.description) { dom.appendChild(infoNode(k.description)); }
        const def = defaultText(schema, k.prop);
        if (def && !k.isKind) { dom.appendChild(infoNode(`default: ${def}`)); }
        return { dom };
      },
    };
  });
}

// ---- JMESPath and Jinja inside the YAML ----------------------------------------------------
const JMES_TOKENS = /('(?:[^'\\]|\\.)*')|(`[^`]*`)|([A-Za-z_][A-Za-z0-9_]*)(?=\s*\()|([A-Za-z_][A-Za-z0-9_]*)(?=\s*:)|([A-Za-z_][A-Za-z0-9_]*)|(-?\d+)|(\|\||&&|[=!<>]=|[<>!|&@*.,:\[\]{}()])/g;
const JMES_CLASSES = ["cm-jp-string", "cm-jp-literal", "cm-jp-function", "cm-jp-key", "cm-jp-field", "cm-jp-number", "cm-jp-operator"];
const JINJA = /(\{\{|\{%-?|\{#)([\s\S]*?)(-?%\}|\}\}|#\})/g;

function jmespathKeys(schema) {
  const keys = new Set(["jmespath", "when", "expression", "filter"]);
  const walk = (node) => {
    if (!node || typeof node !== "object") { return; }
    for (const [name, prop] of Object.entries(node.properties || {})) {
      if (prop && /JMESPath/.test(prop.description || "") && !/template/i.test(prop.description || "")) { keys.add(name); }
    }
    Object.values(node).forEach((v) => { if (v && typeof v === "object") { walk(v); } });
  };
  if (schema) { walk(schema); }
  return keys;
}

const MARKS = {};
JMES_CLASSES.concat(["cm-jinja", "cm-jinja-delim"]).forEach((c) => { MARKS[c] = CM.Decoration.mark({ class: c }); });

function markJmes(ranges, at, text) {
  JMES_TOKENS.lastIndex = 0;
  let t;
  while ((t = JMES_TOKENS.exec(text))) {
    const group = t.slice(1).findIndex((g) => g !== undefined);
    if (group >= 0) { ranges.push([at + t.index, at + t.index + t[0].length, JMES_CLASSES[group]]); }
  }
}

function markJinja(ranges, at, text) {
  JINJA.lastIndex = 0;
  let j;
  while ((j = JINJA.exec(text))) {
    const s = at + j.index;
    ranges.push([s, s + j[1].length, "cm-jinja-delim"]);
    if (j[2].length) { ranges.push([s + j[1].length, s + j[1].length + j[2].length, "cm-jinja"]); }
    ranges.push([s + j[1].length + j[2].length, s + j[0].length, "cm-jinja-delim"]);
  }
}

function decorationsOf(ranges) {
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const builder = new CM.RangeSetBuilder();
  let last = -1;
  for (const [f, t, c] of ranges) {
    if (f < last || f >= t) { continue; }
    builder.add(f, t, MARKS[c]);
    last = t;
  }
  return builder.finish();
}

function highlighter(build) {
  return CM.ViewPlugin.fromClass(class {
    constructor(view) { this.decorations = build(view); }
    update(u) { if (u.docChanged || u.viewportChanged) { this.decorations = build(u.view); } }
  }, { decorations: (v) => v.decorations });
}

/* An expression field of the form view: all JMESPath, or a Jinja template. */
function expressionHighlight(language) {
  return highlighter((view) => {
    const ranges = [];
    for (const { from, to } of view.visibleRanges) {
      const text = view.state.sliceDoc(from, to);
      if (language === "jmespath") { markJmes(ranges, from, text); } else { markJinja(ranges, from, text); }
    }
    return decorationsOf(ranges);
  });
}

function overlay(area) {
  let jmesKeys = jmespathKeys(null);
  loadSchema(area.dataset.schema).then((s) => { if (s) { jmesKeys = jmespathKeys(s); } });
  const jmes = markJmes;

  function build(view) {
    const ranges = [];
    const doc = view.state.doc;
    for (const { from, to } of view.visibleRanges) {
      let blockIndent = -1;  // inside a JMESPath block scalar: its key's indentation
      // start a little above the viewport, so a block scalar begun there is found
      const first = doc.lineAt(from).number;
      let n = Math.max(1, first - 40);
      for (; n <= doc.lineAt(to).number; n++) {
        const line = doc.line(n);
        const text = line.text;
        const indent = text.match(/^\s*/)[0].length;
        if (blockIndent >= 0 && (indent > blockIndent || !text.trim())) {
          if (n >= first) { jmes(ranges, line.from + indent, text.slice(indent)); }
        } else {
          blockIndent = -1;
          const m = text.match(/^(\s*(?:-\s+)*)([A-Za-z0-9_.$\-]+)\s*:\s+(.*)$/);
          const inKeys = m && isUnderKeys(doc, n, indent);
          if (m && (jmesKeys.has(m[2]) || inKeys)) {
            const value = m[3];
            const at = line.from + text.length - value.length;
            if (/^[|>][-+]?\s*(#.*)?$/.test(value)) { blockIndent = indent; }
            else if (n >= first) {
              const q = value.match(/^(["'])(.*)\1\s*(#.*)?$/);
              if (q) { jmes(ranges, at + 1, q[1] === "'" ? q[2] : q[2]); }
              else if (!/^[{\[]/.test(value) || m[2] === "jmespath" || inKeys) { jmes(ranges, at, value.replace(/\s+#.*$/, "")); }
            }
          }
        }
        if (n >= first) { markJinja(ranges, line.from, text); }
      }
    }
    return decorationsOf(ranges);
  }

  function isUnderKeys(doc, n, indent) {
    if (indent === 0) { return false; }
    for (let i = n - 1; i >= 1; i--) {
      const t = doc.line(i).text;
      if (!t.trim() || /^\s*#/.test(t)) { continue; }
      const ind = t.match(/^\s*/)[0].length;
      if (ind < indent) { return ind === 0 && /^keys\s*:\s*(#.*)?$/.test(t); }
    }
    return false;
  }

  return highlighter(build);
}

// ---- problems from the server's check -----------------------------------------------------
function diagnosticsFrom(state, entries) {
  const doc = state.doc;
  const out = [];
  for (const e of entries) {
    let from = 0;
    let to = Math.min(doc.length, doc.line(1).to);
    if (e.line && e.line <= doc.lines) {
      const line = doc.line(e.line);
      from = Math.min(line.to, line.from + Math.max(0, (e.column || 1) - 1));
      const rest = line.text.slice(from - line.from);
      const word = rest.match(/^["']?[A-Za-z0-9_.$\-]+["']?/);
      to = word ? from + word[0].length : line.to;
      if (to === from) { if (from > line.from) { from = line.from; } to = line.to; }
    }
    const d = { from, to, severity: e.severity === "warning" ? "warning" : e.severity === "info" ? "info" : "error", message: e.message, source: "flowyard" };
    if (e.suggestion) {
      const fix = e.suggestion;
      d.actions = [{
        name: `Change to ${fix}`,
        apply(view, f, t) {
          const old = view.state.sliceDoc(f, t);
          const q = old.match(/^(["']?)/)[1];
          view.dispatch({ changes: { from: f, to: t, insert: q + fix + q } });
        },
      }];
    }
    out.push(d);
  }
  return out;
}

function showProblems() {
  document.querySelectorAll("script#issue-data").forEach((el) => {
    const entry = views[el.getAttribute("data-for")];
    if (!entry) { return; }
    let data = [];
    try { data = JSON.parse(el.textContent || "[]"); } catch (_) { return; }
    entry.view.dispatch(CM.setDiagnostics(entry.view.state, diagnosticsFrom(entry.view.state, data)));
  });
}

// ---- wiring ---------------------------------------------------------------------------
const theme = CM.EditorView.theme({
  "&": { height: "100%", width: "100%", fontSize: "13px", backgroundColor: "#fff" },
  ".cm-scroller": { fontFamily: "var(--mono, ui-monospace, monospace)", lineHeight: "1.5" },
  ".cm-gutters": { backgroundColor: "#f1f5f9", color: "#94a3b8", borderRight: "none" },
  ".cm-jp-function, .cm-jp-function span": { color: "#7c3aed !important", fontWeight: "600" },
  ".cm-jp-field, .cm-jp-field span": { color: "#0f766e !important" },
  ".cm-jp-key, .cm-jp-key span": { color: "#1d4ed8 !important" },
  ".cm-jp-string, .cm-jp-string span": { color: "#b45309 !important" },
  ".cm-jp-literal, .cm-jp-literal span": { color: "#b45309 !important" },
  ".cm-jp-number, .cm-jp-number span": { color: "#b45309 !important" },
  ".cm-jp-operator, .cm-jp-operator span": { color: "#64748b !important" },
  ".cm-jinja, .cm-jinja span": { color: "#be185d !important", backgroundColor: "#fdf2f8" },
  ".cm-jinja-delim, .cm-jinja-delim span": { color: "#9d174d !important", fontWeight: "700", backgroundColor: "#fce7f3" },
  ".cm-flowyard-info": { whiteSpace: "pre-wrap", maxWidth: "28rem", fontFamily: "system-ui, sans-serif", fontSize: "12px" },
  ".cm-flowyard-hover": { padding: "4px 8px", maxWidth: "30rem" },
});

function attach(area) {
  const id = area.id;
  const existing = views[id];
  if (existing && existing.view.dom.isConnected) {
    // the textarea was swapped (form view applied): take its text, keep the editor
    existing.area = area;
    area.hidden = true;
    area.dataset.codeEditorOn = "1";
    const text = area.value;
    if (text !== existing.view.state.doc.toString()) {
      existing.syncing = true;
      existing.view.dispatch({ changes: { from: 0, to: existing.view.state.doc.length, insert: text } });
      existing.syncing = false;
    }
    return;
  }
  const host = document.createElement("div");
  host.className = "code-editor";
  host.style.cssText = "flex:1;min-width:0;height:100%;";
  area.insertAdjacentElement("afterend", host);
  const entry = { area, view: null, syncing: false };
  const readOnly = area.readOnly;
  const extensions = [
    CM.lineNumbers(), CM.highlightActiveLineGutter(), CM.foldGutter(), CM.lintGutter(),
    CM.highlightSpecialChars(), CM.history(), CM.drawSelection(), CM.indentOnInput(),
    CM.bracketMatching(), CM.closeBrackets(), CM.highlightActiveLine(), CM.highlightSelectionMatches(),
    CM.yaml(), CM.syntaxHighlighting(CM.defaultHighlightStyle, { fallback: true }),
    overlay(area),  // its marks wrap the YAML highlighter's spans: its colours are set on both
    CM.autocompletion({ override: [schemaCompletion(area)], icons: false }),
    schemaHover(area),
    CM.keymap.of([...CM.closeBracketsKeymap, ...CM.defaultKeymap, ...CM.searchKeymap, ...CM.historyKeymap, ...CM.foldKeymap, ...CM.completionKeymap, ...CM.lintKeymap, CM.indentWithTab]),
    CM.EditorState.tabSize.of(2),
    CM.EditorView.contentAttributes.of({ "aria-label": area.getAttribute("aria-label") || "code", spellcheck: "false" }),
    theme,
    CM.EditorView.updateListener.of((u) => {
      if (!u.docChanged || entry.syncing) { return; }
      entry.area.value = u.state.doc.toString();
      entry.area.dispatchEvent(new Event("input", { bubbles: true }));
    }),
  ];
  if (readOnly) { extensions.push(CM.EditorState.readOnly.of(true), CM.EditorView.editable.of(false)); }
  entry.view = new CM.EditorView({ state: CM.EditorState.create({ doc: area.value, extensions }), parent: host });
  views[id] = entry;
  area.hidden = true;
  area.dataset.codeEditorOn = "1";
  const gutter = area.getAttribute("data-gutter") && document.getElementById(area.getAttribute("data-gutter"));
  if (gutter) { gutter.hidden = true; }
}

function labelOf(area) {
  const label = area.closest("label");
  const text = label && label.firstChild ? label.firstChild.textContent.trim() : "";
  return area.getAttribute("aria-label") || text || area.name;
}

/* An expression field of the form view (data-code-expression: jmespath or jinja): a small
   editor with that language highlighted, writing into its textarea, which the form sends. */
function attachExpression(area) {
  if (area.dataset.codeEditorOn) { return; }
  area.dataset.codeEditorOn = "1";
  const host = document.createElement("div");
  host.className = "code-expression";
  host.style.cssText = "border:1px solid #cbd5e1;border-radius:4px;background:#fff;max-height:16em;overflow:auto;";
  area.insertAdjacentElement("afterend", host);
  const extensions = [
    CM.history(), CM.drawSelection(), CM.bracketMatching(), CM.closeBrackets(), CM.highlightSpecialChars(),
    CM.EditorView.lineWrapping, expressionHighlight(area.dataset.codeExpression), theme,
    CM.keymap.of([...CM.closeBracketsKeymap, ...CM.defaultKeymap, ...CM.historyKeymap]),
    CM.EditorView.contentAttributes.of({ "aria-label": labelOf(area), spellcheck: "false" }),
    CM.EditorView.updateListener.of((u) => {
      if (!u.docChanged) { return; }
      area.value = u.state.doc.toString();
      area.dispatchEvent(new Event("input", { bubbles: true }));
    }),
  ];
  if (area.placeholder) { extensions.push(CM.placeholder(area.placeholder)); }
  if (area.readOnly) { extensions.push(CM.EditorState.readOnly.of(true), CM.EditorView.editable.of(false)); }
  new CM.EditorView({ state: CM.EditorState.create({ doc: area.value, extensions }), parent: host });
  area.hidden = true;
  area.style.display = "none";  // the form's textarea style would show it despite `hidden`
}

function wireAll() {
  document.querySelectorAll("textarea[data-code-editor]").forEach(attach);
  document.querySelectorAll("textarea[data-code-expression]").forEach(attachExpression);
  showProblems();
}

// The issue list's line buttons move the editor's cursor.
const plainGoTo = window.flowyardGoTo;
window.flowyardGoTo = function (id, line, col) {
  const entry = views[id];
  if (!entry) { if (plainGoTo) { plainGoTo(id, line, col); } return; }
  const doc = entry.view.state.doc;
  const l = doc.line(Math.max(1, Math.min(line || 1, doc.lines)));
  const pos = Math.min(l.to, l.from + Math.max(0, (col || 1) - 1));
  entry.view.dispatch({ selection: { anchor: pos }, effects: CM.EditorView.scrollIntoView(pos, { y: "center" }) });
  entry.view.focus();
};
/* For scripts (and tests) that set the text: flowyardEditor.setText("yaml", text). */
window.flowyardEditor = {
  setText(id, text) {
    const entry = views[id];
    if (!entry) { const a = document.getElementById(id); if (a) { a.value = text; a.dispatchEvent(new Event("input", { bubbles: true })); } return; }
    entry.view.dispatch({ changes: { from: 0, to: entry.view.state.doc.length, insert: text } });
  },
  view(id) { return views[id] ? views[id].view : null; },
};

document.addEventListener("htmx:afterSwap", wireAll);   // htmx 2.x
document.addEventListener("htmx:after:swap", wireAll);  // htmx 4.x
document.addEventListener("htmx:oobAfterSwap", wireAll);
if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", wireAll); } else { wireAll(); }
document.documentElement.dataset.codeEditor = "ready";
