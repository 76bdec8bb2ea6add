/* The mapper: pick a target field, then a source field (click or drag) to write its
   path; paths inside a list are written relative to its element. */
(function () {
  "use strict";
  var active = null;
  function relative(path, ctx) {
    if (ctx && path.indexOf(ctx) === 0 && path.length > ctx.length) { return path.slice(ctx.length); }
    if (ctx && path + "." === ctx) { return "@"; }
    return path;
  }
  function choose(input) {
    if (active) { active.closest("tr").classList.remove("active"); }
    active = input;
    if (active) { active.closest("tr").classList.add("active"); }
  }
  function write(input, path) {
    var row = input.closest("tr");
    var ctx = row ? row.getAttribute("data-ctx") || "" : "";
    if (input.classList.contains("src-input")) {
      input.value = relative(path, ctx);
      var refresh = document.getElementById("mapper-refresh");
      if (refresh) { refresh.click(); }  // its fields read from the new list: show them again
      return;
    }
    input.value = relative(path, ctx);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  }
  document.addEventListener("focusin", function (e) {
    var t = e.target;
    if (t && t.matches && t.matches(".expr-input, .src-input")) { choose(t); }
  });
  document.addEventListener("click", function (e) {
    var node = e.target.closest && e.target.closest(".source-field");
    if (!node) { return; }
    if (!active || !document.body.contains(active)) {
      var toast = document.getElementById("toast");
      if (toast) { toast.innerHTML = '<div class="toast error" role="alert">First click the target field the value goes to.</div>'; }
      return;
    }
    var keep = active;
    write(active, node.getAttribute("data-path"));
    keep.focus();
  });
  document.addEventListener("dragstart", function (e) {
    var node = e.target.closest && e.target.closest(".source-field");
    if (node && e.dataTransfer) { e.dataTransfer.setData("text/plain", node.getAttribute("data-path")); }
  });
  document.addEventListener("dragover", function (e) {
    if (e.target.matches && e.target.matches(".expr-input, .src-input")) { e.preventDefault(); }
  });
  document.addEventListener("drop", function (e) {
    var input = e.target;
    if (!(input.matches && input.matches(".expr-input, .src-input")) || !e.dataTransfer) { return; }
    e.preventDefault();
    choose(input);
    write(input, e.dataTransfer.getData("text/plain"));
  });
  // after the targets are drawn again, the same field stays the one chosen
  document.addEventListener("htmx:afterSwap", function () {
    if (active && !document.body.contains(active)) {
      var row = active.closest("tr");
      var again = row ? document.getElementById(row.id) : null;
      choose(again ? again.querySelector(".expr-input, .src-input") : null);
    }
  });
})();
