/* Flowyard UI glue: the CSRF token on every htmx request, errors shown as toasts, and
   the flow editor's line gutter. Written for htmx 2.x and 4.x (no removed APIs). */
(function () {
  "use strict";
  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  // htmx 2.x
  document.addEventListener("htmx:configRequest", function (evt) {
    if (evt.detail && evt.detail.headers) { evt.detail.headers["X-CSRFToken"] = csrfToken(); }
  });
  // htmx 4.x
  document.addEventListener("htmx:config:request", function (evt) {
    var ctx = evt.detail && evt.detail.ctx;
    if (ctx && ctx.request) {
      ctx.request.headers = ctx.request.headers || {};
      ctx.request.headers["X-CSRFToken"] = csrfToken();
    }
  });
  // htmx 2.x does not swap 4xx/5xx answers: show their text in the toast area.
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail && evt.detail.xhr;
    var toast = document.getElementById("toast");
    if (!xhr || !toast || xhr.status === 401) { return; }
    var text = xhr.responseText || ("The server answered " + xhr.status);
    if (/^\s*</.test(text)) {
      // a toast answer is the out-of-band `#toast` wrapper: take what it holds, not a second #toast
      var holder = document.createElement("div");
      holder.innerHTML = text;
      var inner = holder.querySelector("#toast");
      toast.innerHTML = inner ? inner.innerHTML : text;
    } else { toast.textContent = text; }
  });
  document.addEventListener("htmx:sendError", function () {
    var toast = document.getElementById("toast");
    if (toast) { toast.innerHTML = '<div class="toast error" role="alert">The server cannot be reached; retrying when it is back.</div>'; }
  });

  // ---- the flow editor --------------------------------------------------------------
  function gutterFor(area) { return document.getElementById(area.getAttribute("data-gutter")); }

  function renderGutter(area) {
    var gutter = gutterFor(area);
    if (!gutter) { return; }
    var count = area.value.split("\n").length;
    var bad = {};
    (area.getAttribute("data-bad-lines") || "").split(",").forEach(function (n) { if (n) { bad[n] = true; } });
    var html = [];
    for (var i = 1; i <= count; i++) {
      html.push('<div' + (bad[i] ? ' class="bad" title="problem on this line"' : "") + ">" + i + "</div>");
    }
    gutter.innerHTML = html.join("");
    gutter.scrollTop = area.scrollTop;
  }

  function goToLine(area, line, col) {
    var lines = area.value.split("\n");
    var pos = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) { pos += lines[i].length + 1; }
    pos += Math.max(0, (col || 1) - 1);
    area.focus();
    area.setSelectionRange(pos, pos);
    var lineHeight = parseFloat(getComputedStyle(area).lineHeight) || 19;
    area.scrollTop = Math.max(0, (line - 5) * lineHeight);
  }
  window.flowyardGoTo = function (id, line, col) {
    var area = document.getElementById(id);
    if (area) { goToLine(area, line, col); }
  };

  function wire(root) {
    (root.querySelectorAll ? root : document).querySelectorAll("textarea[data-gutter]").forEach(function (area) {
      if (area.dataset.wired) { renderGutter(area); return; }
      area.dataset.wired = "1";
      area.addEventListener("input", function () { renderGutter(area); });
      area.addEventListener("scroll", function () { var g = gutterFor(area); if (g) { g.scrollTop = area.scrollTop; } });
      area.addEventListener("keydown", function (e) {
        if (e.key === "Tab" && !e.shiftKey && !e.ctrlKey && !e.altKey && area.dataset.tabIndent === "1") {
          e.preventDefault();
          var s = area.selectionStart;
          area.setRangeText("  ", s, area.selectionEnd, "end");
          area.dispatchEvent(new Event("input", { bubbles: true }));
        }
        if (e.key === "Escape") { area.dataset.tabIndent = "0"; }
      });
      area.addEventListener("focus", function () { area.dataset.tabIndent = "1"; });
      renderGutter(area);
    });
  }
  // Issues list updates carry the bad lines for the gutter.
  function afterSwap() {
    var holder = document.getElementById("bad-lines");
    if (holder) {
      var area = document.getElementById(holder.getAttribute("data-for"));
      if (area) { area.setAttribute("data-bad-lines", holder.getAttribute("data-lines") || ""); renderGutter(area); }
    }
    wire(document);
  }
  document.addEventListener("htmx:afterSwap", afterSwap);   // htmx 2.x
  document.addEventListener("htmx:after:swap", afterSwap);  // htmx 4.x
  document.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && e.key === "s") {
      var save = document.getElementById("show-diff");
      if (save) { e.preventDefault(); save.click(); }
    }
    if (e.key === "/" && !/INPUT|TEXTAREA|SELECT/.test((document.activeElement || {}).tagName || "")) {
      var search = document.querySelector("[data-search]");
      if (search) { e.preventDefault(); search.focus(); }
    }
  });
  // List and map fields of the form view (flows/fields.html): add a row, remove a row.
  document.addEventListener("click", function (e) {
    var target = e.target instanceof Element ? e.target : null;
    var add = target && target.closest("[data-add-row]");
    var remove = target && target.closest("[data-remove-row]");
    if (add) {
      var group = add.closest("[data-rows]");
      var template = group && group.querySelector("template[data-row-template]");
      if (!template) { return; }
      var row = template.content.firstElementChild.cloneNode(true);
      template.parentNode.insertBefore(row, template);
      var first = row.querySelector("input, select");
      if (first) { first.focus(); }
    } else if (remove) {
      var gone = remove.closest("[data-row]");
      var next = gone && gone.parentNode.querySelector("[data-add-row]");
      if (gone) { gone.remove(); }
      if (next) { next.focus(); }
    }
  });
  document.addEventListener("DOMContentLoaded", function () { wire(document); });
})();
