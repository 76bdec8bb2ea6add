/* Code tables as a grid (templates/tables/grid_pane.html): add and delete rows, sort and
   filter the view, paste rows copied from a spreadsheet (tab-separated), Tab / Enter /
   the up and down arrows to move between cells, empty and duplicate codes marked at their cell as you type, and
   the server's problems placed at their cell after "Review changes" or "Save as draft".
   The grid is a form of plain inputs (`row`, `c0`...`cN` per row), so what is posted is
   what is on screen. No framework; htmx 2.x and 4.x. */
(function () {
  "use strict";
  if (window.flowyardTableGrid) { return; }
  window.flowyardTableGrid = true;

  function form() { return document.getElementById("grid-form"); }
  function body() { return document.getElementById("grid-rows"); }
  function rows() { var b = body(); return b ? Array.prototype.slice.call(b.rows) : []; }
  function inputs(tr) { return Array.prototype.slice.call(tr.querySelectorAll("input[name^='c']")); }
  function visible(tr) { return !tr.hidden; }
  function readonly() { var f = form(); return !f || f.getAttribute("data-readonly") === "1"; }

  // ---- marks at a cell ---------------------------------------------------------------
  function mark(input, message, source) {
    var td = input.parentNode;
    var note = td.querySelector(".cell-msg");
    if (!note) {
      note = document.createElement("span");
      note.className = "cell-msg";
      note.id = "msg-" + Math.random().toString(36).slice(2);
      td.appendChild(note);
    }
    note.textContent = message;
    note.setAttribute("data-source", source);
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", note.id);
    input.title = message;
    td.classList.add("bad");
  }
  function unmark(input, source) {
    var td = input.parentNode;
    if (!td.classList.contains("bad")) { return; }  // the common case, without a query
    var note = td.querySelector(".cell-msg");
    if (!note || (source && note.getAttribute("data-source") !== source)) { return; }
    note.remove();
    input.removeAttribute("aria-invalid");
    input.removeAttribute("aria-describedby");
    input.removeAttribute("title");
    td.classList.remove("bad");
  }

  // empty and duplicate codes, as you type (the server checks again on save)
  function checkCodes() {
    var b = body();
    if (!b) { return; }
    var codes = b.querySelectorAll("input[name=c0]");
    var seen = {};
    var i, code;
    for (i = 0; i < codes.length; i++) {
      code = codes[i].value.trim();
      if (code) { seen[code] = (seen[code] || 0) + 1; }
    }
    for (i = 0; i < codes.length; i++) {
      code = codes[i].value.trim();
      unmark(codes[i], "typing");
      if (code && seen[code] > 1) {
        mark(codes[i], "code '" + code + "' appears twice", "typing");
      } else if (!code && inputs(codes[i].closest("tr")).some(function (c) { return c.value.trim() !== ""; })) {
        mark(codes[i], "empty code: every row needs a code", "typing");
      }
    }
  }

  function changed(tr) {
    if (tr.getAttribute("data-origin") === "") { return inputs(tr).some(function (c) { return c.value !== ""; }); }
    return inputs(tr).some(function (c) { return c.value !== c.defaultValue; });
  }
  function refresh() {
    var all = rows();
    var shown = all.filter(visible).length;
    all.forEach(function (tr) { tr.classList.toggle("changed", changed(tr)); });
    var count = document.getElementById("grid-count");
    if (count) { count.textContent = (shown === all.length ? all.length : shown + " of " + all.length) + " row(s)"; }
  }
  var dirty = false;
  function touched() { dirty = true; checkCodes(); refresh(); }

  // ---- rows --------------------------------------------------------------------------
  var added = 0;
  function addRow(focus) {
    var template = document.getElementById("grid-new-row");
    if (!template || readonly()) { return null; }
    var tr = template.content.firstElementChild.cloneNode(true);
    added += 1;
    tr.querySelector("input[name=row]").value = "+" + added;  // new rows are saved in the order they were added
    body().appendChild(tr);
    if (focus) { inputs(tr)[0].focus(); }
    refresh();
    return tr;
  }

  function filter() {
    var box = document.getElementById("grid-filter");
    var needle = box ? box.value.trim().toLowerCase() : "";
    rows().forEach(function (tr) {
      var isNew = tr.getAttribute("data-origin") === "" && !changed(tr);
      tr.hidden = !!needle && !isNew && !inputs(tr).some(function (c) { return c.value.toLowerCase().indexOf(needle) >= 0; });
    });
    refresh();
  }

  function sortBy(col) {
    var th = document.querySelector("#grid-table th[data-col='" + col + "']");
    var ascending = th.getAttribute("aria-sort") !== "ascending";
    document.querySelectorAll("#grid-table th[data-col]").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
    var keyed = rows().map(function (tr) { return { tr: tr, key: inputs(tr)[col].value }; });
    keyed.sort(function (a, b) {
      var x = a.key, y = b.key;
      if (x === "" || y === "") { return (x === "") - (y === ""); }  // empty cells last
      return ascending ? collator.compare(x, y) : collator.compare(y, x);
    });
    var b = body();
    var moved = document.createDocumentFragment();
    keyed.forEach(function (k) { moved.appendChild(k.tr); });
    b.appendChild(moved);
  }

  // ---- moving between cells ----------------------------------------------------------
  function position(input) {
    var tr = input.closest("tr");
    return { tr: tr, col: inputs(tr).indexOf(input) };
  }
  function nextRow(tr, step) {
    var all = rows().filter(visible);
    var i = all.indexOf(tr) + step;
    return i >= 0 && i < all.length ? all[i] : null;
  }
  function focusCell(tr, col) {
    var cell = inputs(tr)[col];
    if (cell) { cell.focus(); cell.select(); }
  }

  // ---- paste from a spreadsheet --------------------------------------------------------
  // Tab-separated rows; a cell holding a tab, a line break or a quote comes quoted ("").
  function parseTsv(text) {
    text = text.replace(/\r\n?/g, "\n");
    if (text.slice(-1) === "\n") { text = text.slice(0, -1); }
    var out = [], row = [], cell = "", i = 0, quoted = false;
    while (i < text.length) {
      var ch = text[i];
      if (quoted) {
        if (ch === '"' && text[i + 1] === '"') { cell += '"'; i += 2; continue; }
        if (ch === '"') { quoted = false; i++; continue; }
        cell += ch; i++; continue;
      }
      if (ch === '"' && cell === "") { quoted = true; i++; continue; }
      if (ch === "\t") { row.push(cell); cell = ""; i++; continue; }
      if (ch === "\n") { row.push(cell); out.push(row); row = []; cell = ""; i++; continue; }
      cell += ch; i++;
    }
    row.push(cell);
    out.push(row);
    return out;
  }

  function paste(input, text) {
    var block = parseTsv(text);
    var names = Array.prototype.map.call(document.querySelectorAll("#grid-table th[data-col] .grid-sort"),
      function (b) { return b.textContent.trim().toLowerCase(); });
    var first = block[0].map(function (c) { return c.trim().toLowerCase(); });
    if (block.length > 1 && first.join("\t") === names.slice(0, first.length).join("\t")) { block.shift(); }  // a header row
    var at = position(input);
    var tr = at.tr;
    var left = 0;
    block.forEach(function (cells, n) {
      if (n > 0) { tr = nextRow(tr, 1) || addRow(false); }
      if (!tr) { return; }
      var targets = inputs(tr);
      cells.forEach(function (value, k) {
        var cell = targets[at.col + k];
        if (cell) { cell.value = value.trim(); } else if (value.trim()) { left += 1; }
      });
    });
    touched();
    focusCell(at.tr, at.col);  // where the paste began, as a spreadsheet keeps it
    var toast = document.getElementById("toast");
    if (toast) {
      toast.innerHTML = "";
      var note = document.createElement("div");
      note.className = left ? "toast error" : "toast";
      note.setAttribute("role", left ? "alert" : "status");
      note.textContent = "Pasted " + block.length + " row(s)" +
        (left ? "; " + left + " cell(s) beyond the last column were left out." : ".");
      toast.appendChild(note);
      setTimeout(function () { note.remove(); }, left ? 10000 : 4000);
    }
  }

  // ---- wiring (delegated: the pane is replaced after a save) ----------------------------
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (!(t instanceof Element) || !t.closest("#grid-pane")) { return; }
    var sort = t.closest(".grid-sort");
    if (sort) { sortBy(parseInt(sort.getAttribute("data-col"), 10)); return; }
    if (t.closest("#grid-add")) { addRow(true); return; }
    var del = t.closest(".grid-del");
    if (del) {
      var tr = del.closest("tr");
      var next = nextRow(tr, 1) || nextRow(tr, -1);
      tr.remove();
      touched();
      if (next) { focusCell(next, 0); }
      return;
    }
    var go = t.closest(".grid-goto");
    if (go) {
      var row = rows()[parseInt(go.getAttribute("data-row"), 10)];
      if (row) {
        if (row.hidden) { document.getElementById("grid-filter").value = ""; filter(); }
        focusCell(row, parseInt(go.getAttribute("data-col"), 10));
      }
    }
  });

  document.addEventListener("input", function (e) {
    var t = e.target;
    if (!(t instanceof HTMLInputElement) || !t.closest("#grid-pane")) { return; }
    if (t.id === "grid-filter") { filter(); return; }
    clearServerMarks();  // the last save's problems are out of date once the grid changes
    dirty = true;
    var tr = t.closest("tr");
    tr.classList.toggle("changed", changed(tr));
    var code = tr.querySelector("input[name=c0]");
    if (t === code || !code.value.trim() || tr.querySelector("td.bad")) { checkCodes(); }  // a code, a row without one, or one marked
  });

  document.addEventListener("keydown", function (e) {
    var t = e.target;
    if (!(t instanceof HTMLInputElement) || !t.closest("#grid-rows")) {
      if (t instanceof HTMLInputElement && t.id === "grid-filter" && e.key === "Enter") { e.preventDefault(); }
      return;
    }
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    var at = position(t);
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      var row = nextRow(at.tr, e.key === "ArrowDown" ? 1 : -1);
      if (row) { e.preventDefault(); focusCell(row, at.col); }
      return;
    }
    if (e.key !== "Enter") { return; }
    e.preventDefault();  // Enter moves down a row; it never submits the form
    var target = nextRow(at.tr, e.shiftKey ? -1 : 1);
    if (!target && !e.shiftKey) { target = addRow(false); }
    if (target) { focusCell(target, at.col); }
  });

  document.addEventListener("paste", function (e) {
    var t = e.target;
    if (!(t instanceof HTMLInputElement) || !t.closest("#grid-rows") || t.readOnly) { return; }
    var text = (e.clipboardData || window.clipboardData).getData("text");
    if (!/[\t\n]/.test(text.replace(/\r?\n$/, ""))) { return; }  // one value: an ordinary paste
    e.preventDefault();
    paste(t, text);
  });

  // the server's problems, at their cells
  function clearServerMarks() {
    document.querySelectorAll("#grid-rows .cell-msg[data-source='server']").forEach(function (note) {
      var input = note.parentNode.querySelector("input[name^='c']");
      if (input) { unmark(input, "server"); }
    });
  }
  function placeErrors() {
    var holder = document.getElementById("grid-errors");
    if (!holder) { return; }
    var errors = JSON.parse(holder.getAttribute("data-errors") || "[]");
    var all = rows();
    clearServerMarks();
    errors.forEach(function (err) {
      var tr = all[err.row];
      var cell = tr && inputs(tr)[err.col];
      if (cell) { mark(cell, err.message, "server"); }
    });
    holder.remove();
  }
  function afterSwap() {
    placeErrors();
    if (document.querySelector("#grid-result .ok")) { dirty = false; }
    if (body()) { checkCodes(); refresh(); }
  }
  document.addEventListener("htmx:afterSwap", afterSwap);   // htmx 2.x
  document.addEventListener("htmx:after:swap", afterSwap);  // htmx 4.x
  window.addEventListener("beforeunload", function (e) {
    if (dirty && body()) { e.preventDefault(); e.returnValue = ""; }
  });
  document.addEventListener("DOMContentLoaded", function () {
    if (body()) { refresh(); }
  });
})();
