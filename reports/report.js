/* reconcile report: renders the discrepancy list from the embedded JSON, one page at a time,
   and makes the client table sortable and clickable.
   Safety: data only ever reaches the page through textContent, attribute setters and
   option values; no HTML string is ever parsed (a test greps this file for the sinks).
   Embedded format: see the docstring of reconcile/report.py. */
(function () {
  "use strict";

  var PAGE_SIZE = 100;
  var SEV_RANK = { blocker: 0, warning: 1, info: 2, expected: 3 };

  var source = document.getElementById("report-data");
  if (!source) { return; }
  var data = JSON.parse(source.textContent);
  var strings = data.strings || [];
  var rules = data.rules || {};
  var C = indexOf(data.columns || []);
  var L = indexOf(data.line_columns || []);
  var collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

  function indexOf(names) {
    var out = {};
    for (var i = 0; i < names.length; i++) { out[names[i]] = i; }
    return out;
  }
  function str(slot) { return slot === null || slot === undefined ? null : strings[slot]; }
  function ruleTitle(code) {
    var r = rules[code];
    return (r && r.title) || code || "";
  }

  /* ---- exact decimal formatting (same algorithm as reconcile.report.format_decimal) ---- */
  function groupDigits(whole) { return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ","); }
  function formatDecimal(value, minPlaces, signed) {
    if (value === null || value === undefined || value === "") { return "—"; }
    var text = String(value).trim();
    var sign = "";
    if (text.charAt(0) === "-" || text.charAt(0) === "+") {
      sign = text.charAt(0) === "-" ? "-" : "";
      text = text.slice(1);
    }
    var dot = text.indexOf(".");
    var whole = dot < 0 ? text : text.slice(0, dot);
    var frac = dot < 0 ? "" : text.slice(dot + 1);
    if (!/^\d*$/.test(whole) || !/^\d*$/.test(frac) || (whole + frac) === "") { return String(value); }
    whole = whole.replace(/^0+/, "") || "0";
    frac = frac.replace(/0+$/, "");
    while (frac.length < minPlaces) { frac += "0"; }
    if (/^0*$/.test(whole + frac)) { sign = ""; }
    else if (signed && !sign) { sign = "+"; }
    return sign + groupDigits(whole) + (frac ? "." + frac : "");
  }
  function money(v) { return formatDecimal(v, 2, false); }
  function signedMoney(v) { return formatDecimal(v, 2, true); }
  function quantity(v) { return formatDecimal(v, 0, false); }
  function count(n) { return groupDigits(String(n)); }
  /* Integer cents from an exact decimal string, for ordering only (exact below 2^53 cents). */
  function cents(value) {
    if (value === null || value === undefined) { return 0; }
    var m = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/.exec(String(value));
    if (!m) { return 0; }
    var n = parseInt((m[2] || "0") + ((m[3] || "") + "00").slice(0, 2), 10);
    return m[1] === "-" ? -n : n;
  }

  /* ---- the discrepancies ---- */
  var items = (data.discrepancies || []).map(function (row, i) {
    var rule = str(row[C.rule]);
    var diff = row[C.difference];
    var d = cents(diff);
    return {
      i: i, row: row, id: String(row[C.id]), rule: rule, ruleTitle: ruleTitle(rule),
      sev: str(row[C.severity]), client: str(row[C.client]) || "", diff: diff, diffCents: d,
      abs: Math.abs(d), at: row[C.autotask_amount], hp: row[C.halopsa_amount],
      atCents: cents(row[C.autotask_amount]), hpCents: cents(row[C.halopsa_amount]),
      measure: str(row[C.measure]) || "", gross: row[C.gross_difference],
      grossCents: cents(row[C.gross_difference]),
      msg: row[C.message] || "", hay: null
    };
  });
  var byId = new Map(items.map(function (it) { return [it.id, it]; }));

  function linesOf(it, side) { return it.row[C[side]] || []; }
  function haystack(it) {
    if (it.hay === null) {
      var parts = [it.id, it.rule, it.ruleTitle, it.client, it.msg];
      ["autotask_lines", "halopsa_lines"].forEach(function (side) {
        linesOf(it, side).forEach(function (line) {
          parts.push(line[L.ref], str(line[L.item]), str(line[L.description]));
        });
      });
      it.hay = parts.filter(function (p) { return p !== null && p !== undefined; }).join("\n").toLowerCase();
    }
    return it.hay;
  }

  /* ---- state ---- */
  var sevBoxes = Array.prototype.slice.call(document.querySelectorAll('#filters input[name="severity"]'));
  var knownSev = new Set(sevBoxes.map(function (b) { return b.value; }));
  var state = {
    sev: new Set(knownSev), rule: "", client: "", q: "",
    sortKey: "severity", sortDir: 1, page: 0, expanded: new Set()
  };
  var view = items.slice();

  var el = {
    body: document.getElementById("disc-body"),
    count: document.getElementById("disc-count"),
    rule: document.getElementById("f-rule"),
    client: document.getElementById("f-client"),
    search: document.getElementById("f-search"),
    active: document.getElementById("active-filters"),
    activeText: document.getElementById("active-filter-text"),
    clear: document.getElementById("clear-filters"),
    pagers: Array.prototype.slice.call(document.querySelectorAll("[data-pager]")),
    table: document.getElementById("disc-table")
  };
  if (!el.body) { return; }
  var form = document.getElementById("filters");
  form.hidden = false;
  form.addEventListener("submit", function (ev) { ev.preventDefault(); });

  function filtersActive() {
    return state.rule !== "" || state.client !== "" || state.q !== "" || state.sev.size !== knownSev.size;
  }
  function matches(it) {
    if (knownSev.has(it.sev) && !state.sev.has(it.sev)) { return false; }
    if (state.rule && it.rule !== state.rule) { return false; }
    if (state.client && it.client !== state.client) { return false; }
    if (state.q && haystack(it).indexOf(state.q) < 0) { return false; }
    return true;
  }

  var COMPARE = {
    severity: function (a, b) {
      return rank(a) - rank(b) || b.abs - a.abs;
    },
    rule: function (a, b) { return collator.compare(a.ruleTitle, b.ruleTitle); },
    client: function (a, b) { return collator.compare(a.client, b.client); },
    autotask: function (a, b) { return a.atCents - b.atCents; },
    halopsa: function (a, b) { return a.hpCents - b.hpCents; },
    difference: function (a, b) { return a.diffCents - b.diffCents; },
    measure: function (a, b) { return collator.compare(a.measure, b.measure); },
    gross: function (a, b) { return a.grossCents - b.grossCents; },
    message: function (a, b) { return collator.compare(a.msg, b.msg); }
  };
  function rank(it) { return it.sev in SEV_RANK ? SEV_RANK[it.sev] : 9; }

  function recompute() {
    var cmp = COMPARE[state.sortKey] || COMPARE.severity;
    var dir = state.sortDir;
    view = items.filter(matches);
    view.sort(function (a, b) { return dir * cmp(a, b) || a.i - b.i; });
    var pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
    if (state.page >= pages) { state.page = pages - 1; }
  }

  /* ---- DOM helpers (textContent only) ---- */
  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) { n.className = className; }
    if (text !== undefined && text !== null) { n.textContent = text; }
    return n;
  }
  function badge(sev) { return node("span", "badge sev-" + (sev || "unknown"), sev || "?"); }

  var FIELDS = [
    ["item", "Item", null, true], ["description", "Description", null, true],
    ["quantity", "Quantity", quantity, false], ["unit_price", "Unit price", money, false],
    ["net_amount", "Net", money, false], ["tax_amount", "Tax", money, false],
    ["period", "Period", null, true]
  ];
  var INTERNED = { item: true, description: true, period: true };

  function lineValue(line, key) {
    var raw = line[L[key]];
    return INTERNED[key] ? str(raw) : raw;
  }

  function compareTable(it) {
    var at = linesOf(it, "autotask_lines");
    var hp = linesOf(it, "halopsa_lines");
    var table = node("table", "cmp");
    var head = node("tr");
    head.appendChild(node("th"));
    function sideHeads(lines, cls, label) {
      if (!lines.length) { head.appendChild(node("th", cls, label)); return; }
      lines.forEach(function (line) {
        var th = node("th", cls, label + " ");
        th.appendChild(node("span", "ref", line[L.ref]));
        head.appendChild(th);
      });
    }
    sideHeads(at, "side-at", "Autotask");
    sideHeads(hp, "side-hp", "HaloPSA");
    table.appendChild(node("thead")).appendChild(head);
    var body = node("tbody");
    FIELDS.forEach(function (f) {
      var key = f[0], fmt = f[2];
      var tr = node("tr");
      var values = at.concat(hp).map(function (line) { return lineValue(line, key); });
      if (at.length && hp.length && new Set(values).size > 1) { tr.className = "differs"; }
      tr.appendChild(node("th", null, f[1])).scope = "row";
      function cells(lines, cls) {
        if (!lines.length) {
          tr.appendChild(node("td", cls + " none", key === "item" ? "no line" : ""));
          return;
        }
        lines.forEach(function (line) {
          var v = lineValue(line, key);
          tr.appendChild(node("td", cls + (f[3] ? "" : " num"), fmt ? fmt(v) : v));
        });
      }
      cells(at, "side-at");
      cells(hp, "side-hp");
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }

  function detailRow(it) {
    var tr = node("tr", "detail");
    tr.id = "detail-" + it.id;
    var td = node("td");
    td.colSpan = 10;
    var grid = node("div", "detail-grid");
    var left = node("div", "lines");
    left.appendChild(compareTable(it));
    var why = node("div", "why");
    why.appendChild(node("h3", null, it.ruleTitle));
    var rule = rules[it.rule] || {};
    String(rule.explanation || "No explanation recorded for this rule.").split(/\n\s*\n/).forEach(function (para) {
      why.appendChild(node("p", null, para));
    });
    var meta = node("p", "small muted", "ID " + it.id + " · rule " + (it.rule || "?"));
    why.appendChild(meta);
    grid.appendChild(left);
    grid.appendChild(why);
    td.appendChild(grid);
    tr.appendChild(td);
    return tr;
  }

  function discRow(it) {
    var open = state.expanded.has(it.id);
    var tr = node("tr", "disc-row" + (open ? " open" : ""));
    tr.id = "row-" + it.id;
    tr.dataset.id = it.id;
    tr.dataset.client = it.client;
    tr.dataset.severity = it.sev || "";
    tr.dataset.rule = it.rule || "";
    tr.dataset.diff = it.diff === null || it.diff === undefined ? "" : String(it.diff);
    var tdT = node("td", "c-toggle");
    var btn = node("button", "toggle", open ? "▾" : "▸");
    btn.type = "button";
    btn.setAttribute("aria-expanded", open ? "true" : "false");
    btn.setAttribute("aria-label", (open ? "Hide" : "Show") + " lines for " + it.id);
    tdT.appendChild(btn);
    tr.appendChild(tdT);
    var tdS = node("td", "c-sev");
    tdS.appendChild(badge(it.sev));
    tr.appendChild(tdS);
    tr.appendChild(node("td", "c-rule", it.ruleTitle));
    tr.appendChild(node("td", "c-client", it.client));
    tr.appendChild(node("td", "c-measure", it.measure));
    tr.appendChild(node("td", "num c-at", money(it.at)));
    tr.appendChild(node("td", "num c-hp", money(it.hp)));
    tr.appendChild(node("td", "num c-diff", signedMoney(it.diff)));
    tr.appendChild(node("td", "num c-gross", signedMoney(it.gross)));
    var msg = node("td", "c-msg", it.msg);
    var root = it.row[C.root_cause];
    if (root) {
      var link = node("a", "root-cause", "follows from " + root);
      link.href = "#row-" + root;
      msg.appendChild(document.createTextNode(" "));
      msg.appendChild(link);
    }
    tr.appendChild(msg);
    return tr;
  }

  function renderPager(pages) {
    el.pagers.forEach(function (p) {
      p.replaceChildren();
      if (view.length <= PAGE_SIZE) { return; }
      function btn(label, target, disabled, cls) {
        var b = node("button", cls, label);
        b.type = "button";
        b.disabled = disabled;
        b.addEventListener("click", function () { state.page = target; render(); el.table.scrollIntoView({ block: "start" }); });
        p.appendChild(b);
      }
      btn("« First", 0, state.page === 0, "first");
      btn("‹ Prev", state.page - 1, state.page === 0, "prev");
      var first = state.page * PAGE_SIZE + 1;
      var last = Math.min(view.length, first + PAGE_SIZE - 1);
      p.appendChild(node("span", "page-info",
        "Page " + count(state.page + 1) + " of " + count(pages) + " · rows " + count(first) + "–" + count(last)));
      btn("Next ›", state.page + 1, state.page >= pages - 1, "next");
      btn("Last »", pages - 1, state.page >= pages - 1, "last");
    });
  }

  function renderActive() {
    var parts = [];
    if (state.client) { parts.push("Client: " + state.client); }
    if (state.rule) { parts.push("Rule: " + ruleTitle(state.rule)); }
    if (state.sev.size !== knownSev.size) {
      parts.push("Severity: " + (Array.from(state.sev).join(", ") || "none"));
    }
    if (state.q) { parts.push("Search: “" + state.q + "”"); }
    el.active.hidden = !filtersActive();
    el.activeText.textContent = parts.join(" · ");
    document.querySelectorAll("#client-table .client-row").forEach(function (r) {
      r.classList.toggle("selected", state.client !== "" && r.dataset.client === state.client);
    });
  }

  function renderSortHeaders() {
    el.table.querySelectorAll("thead th").forEach(function (th) {
      var b = th.querySelector("button.sort");
      if (!b) { return; }
      th.setAttribute("aria-sort", b.dataset.key === state.sortKey
        ? (state.sortDir > 0 ? "ascending" : "descending") : "none");
    });
  }

  function render() {
    var pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
    var start = state.page * PAGE_SIZE;
    var frag = document.createDocumentFragment();
    view.slice(start, start + PAGE_SIZE).forEach(function (it) {
      frag.appendChild(discRow(it));
      if (state.expanded.has(it.id)) { frag.appendChild(detailRow(it)); }
    });
    if (!view.length) {
      var tr = node("tr", "no-rows");
      var td = node("td", "empty", "No discrepancies match these filters.");
      td.colSpan = 10;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    el.body.replaceChildren(frag);
    el.count.textContent = count(view.length) + " of " + count(items.length) + " discrepancies";
    renderPager(pages);
    renderActive();
    renderSortHeaders();
  }

  function update() { state.page = 0; recompute(); render(); }

  /* ---- filters ---- */
  function fillSelect(select, entries) {
    entries.forEach(function (e) {
      var o = document.createElement("option");
      o.value = e[0];
      o.textContent = e[1];
      select.appendChild(o);
    });
  }
  (function buildSelects() {
    var ruleCounts = new Map(), clientCounts = new Map();
    items.forEach(function (it) {
      ruleCounts.set(it.rule, (ruleCounts.get(it.rule) || 0) + 1);
      clientCounts.set(it.client, (clientCounts.get(it.client) || 0) + 1);
    });
    document.querySelectorAll("#client-table .client-row").forEach(function (r) {
      if (!clientCounts.has(r.dataset.client)) { clientCounts.set(r.dataset.client, 0); }
    });
    fillSelect(el.rule, Array.from(ruleCounts.keys())
      .sort(function (a, b) { return collator.compare(ruleTitle(a), ruleTitle(b)); })
      .map(function (k) { return [k, ruleTitle(k) + " (" + count(ruleCounts.get(k)) + ")"]; }));
    fillSelect(el.client, Array.from(clientCounts.keys())
      .sort(collator.compare)
      .map(function (k) { return [k, k + " (" + count(clientCounts.get(k)) + ")"]; }));
  })();

  sevBoxes.forEach(function (box) {
    box.addEventListener("change", function () {
      if (box.checked) { state.sev.add(box.value); } else { state.sev.delete(box.value); }
      update();
    });
  });
  el.rule.addEventListener("change", function () { state.rule = el.rule.value; update(); });
  el.client.addEventListener("change", function () { state.client = el.client.value; update(); });
  var searchTimer = 0;
  el.search.addEventListener("input", function () {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(function () {
      var q = el.search.value.trim().toLowerCase();
      if (q !== state.q) { state.q = q; update(); }
    }, 120);
  });

  function clearFilters() {
    state.sev = new Set(knownSev);
    sevBoxes.forEach(function (b) { b.checked = true; });
    state.rule = ""; el.rule.value = "";
    state.client = ""; el.client.value = "";
    state.q = ""; el.search.value = "";
    update();
  }
  el.clear.addEventListener("click", clearFilters);

  /* ---- sorting and expanding ---- */
  el.table.querySelectorAll("thead button.sort").forEach(function (b) {
    b.addEventListener("click", function () {
      var key = b.dataset.key;
      if (state.sortKey === key) { state.sortDir = -state.sortDir; }
      else { state.sortKey = key; state.sortDir = 1; }
      update();
    });
  });

  function toggle(id) {
    if (state.expanded.has(id)) { state.expanded.delete(id); } else { state.expanded.add(id); }
    render();
  }
  el.body.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.disc-row");
    if (!tr) { return; }
    var selection = window.getSelection();
    if (selection && String(selection).length && ev.target.tagName !== "BUTTON") { return; }
    toggle(tr.dataset.id);
    var again = document.getElementById("row-" + tr.dataset.id);
    var button = again && again.querySelector("button.toggle");
    if (button && ev.target.tagName === "BUTTON") { button.focus(); }
  });

  /* Show one discrepancy: used by the "Largest problems" links and by #row-… URLs. */
  function goTo(id) {
    var it = byId.get(id);
    if (!it) { return; }
    if (!matches(it)) { clearFilters(); }
    var index = view.indexOf(it);
    if (index < 0) { return; }
    state.page = Math.floor(index / PAGE_SIZE);
    state.expanded.add(id);
    render();
    var row = document.getElementById("row-" + id);
    if (row) {
      row.scrollIntoView({ block: "center" });
      row.classList.add("flash");
    }
  }
  document.querySelectorAll("a.jump[data-target]").forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      goTo(a.dataset.target);
    });
  });

  /* ---- client table: sort by header, click a row to filter ---- */
  var clientTable = document.getElementById("client-table");
  if (clientTable) {
    var cbody = clientTable.tBodies[0];
    clientTable.querySelectorAll("thead button.sort").forEach(function (b, col) {
      b.addEventListener("click", function () {
        var th = b.closest("th");
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        var numeric = b.dataset.type === "num";
        var rows = Array.prototype.slice.call(cbody.rows);
        rows.sort(function (r1, r2) {
          var a = r1.cells[col].dataset.v || "", z = r2.cells[col].dataset.v || "";
          return dir * (numeric ? cents(a) - cents(z) : collator.compare(a, z));
        });
        cbody.replaceChildren.apply(cbody, rows);
        clientTable.querySelectorAll("thead th").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
      });
    });
    cbody.addEventListener("click", function (ev) {
      var tr = ev.target.closest("tr.client-row");
      if (!tr) { return; }
      state.client = tr.dataset.client;
      el.client.value = state.client;
      update();
      document.getElementById("discrepancies").scrollIntoView({ block: "start" });
    });
  }

  recompute();
  render();
  if (location.hash.indexOf("#row-") === 0) { goTo(decodeURIComponent(location.hash.slice(5))); }
  document.body.dataset.ready = "1";
  window.reconcileReport = { formatDecimal: formatDecimal, cents: cents };
})();
