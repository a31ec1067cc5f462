/* reconcile report: renders the discrepancy list and the per-client table from the embedded
   tables, one page at a time; filters, sorts and pages them.
   Safety: data only ever reaches the page through textContent, attribute setters and
   option values; no HTML string is ever parsed (a test greps this file for the sinks).
   Embedded format (column by column, repeated values interned): see the docstring of
   reconcile/report.py. Large tables travel gzip-compressed and base64-encoded; the browser's
   own DecompressionStream unpacks them, without any request. */
(function () {
  "use strict";

  var PAGE_SIZE = 100;
  var CLIENT_PAGE_SIZE = 25;
  var SUGGESTIONS = 30;
  var SEV_RANK = { blocker: 0, warning: 1, info: 2, expected: 3 };

  /* ---- exact decimal formatting (same algorithm as reconcile.wording.format_decimal) ---- */
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
  /* An amount with its currency code before it ("GBP 1,664.40"); a missing amount stays "—". */
  function inCurrency(code, text) { return code && text !== "—" ? code + " " + text : text; }
  function count(n) { return groupDigits(String(n)); }
  /* "1 client", "2 clients": n and the noun agreeing with it. */
  function counted(n, one, many) { return count(n) + " " + (n === 1 ? one : many); }
  /* Integer cents from an exact decimal string, for ordering only (exact below 2^53 cents). */
  function cents(value) {
    if (value === null || value === undefined) { return 0; }
    var m = /^\s*([+-]?)(\d*)(?:\.(\d*))?\s*$/.exec(String(value));
    if (!m) { return 0; }
    var n = parseInt((m[2] || "0") + ((m[3] || "") + "00").slice(0, 2), 10);
    return m[1] === "-" ? -n : n;
  }
  window.reconcileReport = { formatDecimal: formatDecimal, cents: cents };

  /* ---- DOM helpers (textContent only) ---- */
  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) { n.className = className; }
    if (text !== undefined && text !== null) { n.textContent = text; }
    return n;
  }
  function badge(sev) { return node("span", "badge sev-" + (sev || "unknown"), sev || "?"); }
  function range(n) {
    var out = new Int32Array(n);
    for (var i = 0; i < n; i++) { out[i] = i; }
    return out;
  }
  /* Page buttons into each container; go(page) shows that page. */
  function renderPager(containers, total, size, page, go) {
    var pages = Math.max(1, Math.ceil(total / size));
    containers.forEach(function (p) {
      p.replaceChildren();
      if (total <= size) { return; }
      function btn(label, target, disabled, cls) {
        var b = node("button", cls, label);
        b.type = "button";
        b.disabled = disabled;
        b.addEventListener("click", function () { go(target); });
        p.appendChild(b);
      }
      btn("« First", 0, page === 0, "first");
      btn("‹ Prev", page - 1, page === 0, "prev");
      var first = page * size + 1;
      var last = Math.min(total, first + size - 1);
      p.appendChild(node("span", "page-info",
        "Page " + count(page + 1) + " of " + count(pages) + " · rows " + count(first) + "–" + count(last)));
      btn("Next ›", page + 1, page >= pages - 1, "next");
      btn("Last »", pages - 1, page >= pages - 1, "last");
    });
  }
  /* A text's sort key for the native string order, close to a collator's but far faster on
     100,000 rows: case and accents ignored, numbers in number order (each run of digits led by
     a letter that says how long it is). */
  function sortKey(text) {
    return String(text === null || text === undefined ? "" : text).normalize("NFD")
      .replace(/[\u0300-\u036f]/g, "").toLowerCase()
      .replace(/\d+/g, function (digits) {
        var d = digits.replace(/^0+(?=\d)/, "");
        return String.fromCharCode(64 + Math.min(d.length, 26)) + d;
      });
  }
  /* rank[i]: the place of row i when rows 0..count-1 are ordered by text(i). */
  function textRanks(count, text) {
    var keys = new Array(count);
    for (var i = 0; i < count; i++) { keys[i] = sortKey(text(i)); }
    var order = Array.from(range(count)).sort(function (a, b) {
      return keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : a - b;
    });
    var ranks = new Float64Array(count);
    order.forEach(function (row, place) { ranks[row] = place; });
    return ranks;
  }
  function debounce(fn) {
    var timer = 0;
    return function () { clearTimeout(timer); timer = setTimeout(fn, 120); };
  }

  var source = document.getElementById("report-data");
  if (!source) { return; }
  var data = JSON.parse(source.textContent);
  loadTables(data).then(start, function (err) {
    ["disc-body", "client-body"].forEach(function (id) {
      var body = document.getElementById(id);
      if (!body) { return; }
      var tr = node("tr", "no-rows");
      var td = node("td", "empty", "This browser could not unpack the report's tables (" + err +
        "); open the file in a current Chrome, Edge, Firefox or Safari.");
      td.colSpan = 10;
      tr.appendChild(td);
      body.replaceChildren(tr);
    });
    document.body.dataset.ready = "1";
  });

  function loadTables(d) {
    if (!d.tables_gzip) { return Promise.resolve(d.tables); }
    return new Promise(function (resolve) {
      var binary = atob(d.tables_gzip);
      var bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) { bytes[i] = binary.charCodeAt(i); }
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      resolve(new Response(stream).text().then(JSON.parse));
    });
  }

  function start(tables) {
    var strings = tables.strings || [];
    var rules = data.rules || {};
    var explanations = {};  /* rule code -> its <template> (explanation rendered from Markdown) */
    document.querySelectorAll("template.rule-explanation").forEach(function (t) {
      explanations[t.dataset.rule] = t;
    });
    var D = tables.discrepancies;
    var L = tables.lines;
    var CL = tables.clients;
    var n = D.id.length;
    var collator = new Intl.Collator(undefined, { sensitivity: "base", numeric: true });

    function str(slot) { return slot === null || slot === undefined ? null : strings[slot]; }
    function ruleTitle(code) {
      var r = rules[code];
      return (r && r.title) || code || "";
    }
    var slotOf = null;  /* string -> its slot, built when first needed */
    function slot(text) {
      if (!slotOf) {
        slotOf = new Map();
        for (var i = 0; i < strings.length; i++) { slotOf.set(strings[i], i); }
      }
      return slotOf.has(text) ? slotOf.get(text) : -1;
    }

    /* ---- the discrepancies: one entry per row in typed arrays, the rest read on demand ---- */
    var rank = new Int8Array(n);
    var diffC = new Float64Array(n), atC = new Float64Array(n), hpC = new Float64Array(n);
    var grossC = new Float64Array(n), absC = new Float64Array(n);
    for (var i = 0; i < n; i++) {
      var sev = str(D.severity[i]);
      rank[i] = sev in SEV_RANK ? SEV_RANK[sev] : 9;
      diffC[i] = cents(D.difference[i]);
      absC[i] = Math.abs(diffC[i]);
      atC[i] = cents(D.autotask_amount[i]);
      hpC[i] = cents(D.halopsa_amount[i]);
      grossC[i] = cents(D.gross_difference[i]);
    }
    /* lines of row r: lineStart[r] .. lineStart[r + 1] (the lines come grouped by row) */
    var lineStart = new Int32Array(n + 1);
    for (var j = 0; j < L.row.length; j++) { lineStart[L.row[j] + 1]++; }
    for (var r = 0; r < n; r++) { lineStart[r + 1] += lineStart[r]; }
    var clientCounts = new Map();  /* client slot -> number of discrepancies */
    for (var k = 0; k < n; k++) { clientCounts.set(D.client[k], (clientCounts.get(D.client[k]) || 0) + 1); }

    function rowLines(row, side) {
      var out = [];
      for (var x = lineStart[row]; x < lineStart[row + 1]; x++) {
        if (str(L.side[x]) === side) { out.push(x); }
      }
      return out;
    }
    var hay = new Array(n);
    function haystack(row) {
      if (hay[row] === undefined) {
        var rule = str(D.rule[row]);
        var parts = [D.id[row], rule, ruleTitle(rule), str(D.client[row]), D.message[row]];
        for (var x = lineStart[row]; x < lineStart[row + 1]; x++) {
          parts.push(L.ref[x], str(L.item[x]), str(L.description[x]));
        }
        hay[row] = parts.filter(function (p) { return p !== null && p !== undefined; }).join("\n").toLowerCase();
      }
      return hay[row];
    }

    /* ---- state ---- */
    var sevBoxes = Array.prototype.slice.call(document.querySelectorAll('#filters input[name="severity"]'));
    var knownSev = new Set(sevBoxes.map(function (b) { return b.value; }));
    var state = {
      sev: new Set(knownSev), rule: "", client: "", clientPart: "", q: "",
      sortKey: "severity", sortDir: 1, page: 0, expanded: new Set()
    };
    var view = [];

    var el = {
      body: document.getElementById("disc-body"),
      count: document.getElementById("disc-count"),
      rule: document.getElementById("f-rule"),
      client: document.getElementById("f-client"),
      names: document.getElementById("f-client-names"),
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
      return state.rule !== "" || state.client !== "" || state.clientPart !== "" || state.q !== "" ||
        state.sev.size !== knownSev.size;
    }
    function matcher() {
      var allowed = {}, ruleSlot = state.rule ? slot(state.rule) : -2;
      var clientSlot = state.client ? slot(state.client) : -2;
      var part = state.clientPart, partOf = new Map();
      return function (row) {
        var sev = str(D.severity[row]);
        if (!(sev in allowed)) { allowed[sev] = !knownSev.has(sev) || state.sev.has(sev); }
        if (!allowed[sev]) { return false; }
        if (ruleSlot !== -2 && D.rule[row] !== ruleSlot) { return false; }
        if (clientSlot !== -2 && D.client[row] !== clientSlot) { return false; }
        if (part) {
          var c = D.client[row];
          if (!partOf.has(c)) { partOf.set(c, (str(c) || "").toLowerCase().indexOf(part) >= 0); }
          if (!partOf.get(c)) { return false; }
        }
        if (state.q && haystack(row).indexOf(state.q) < 0) { return false; }
        return true;
      };
    }

    var rankCache = {};  /* text column -> textRanks of the discrepancies, once computed */
    var COMPARE = {
      severity: function () { return function (a, b) { return rank[a] - rank[b] || absC[b] - absC[a]; }; },
      autotask: function () { return function (a, b) { return atC[a] - atC[b]; }; },
      halopsa: function () { return function (a, b) { return hpC[a] - hpC[b]; }; },
      difference: function () { return function (a, b) { return diffC[a] - diffC[b]; }; },
      gross: function () { return function (a, b) { return grossC[a] - grossC[b]; }; },
      rule: byText("rule", function (row) { return ruleTitle(str(D.rule[row])); }),
      client: byText("client", function (row) { return str(D.client[row]) || ""; }),
      measure: byText("measure", function (row) { return str(D.measure[row]) || ""; }),
      message: byText("message", function (row) { return D.message[row] || ""; })
    };
    function byText(key, text) {
      return function () {
        var ranks = rankCache[key] || (rankCache[key] = textRanks(n, text));
        return function (a, b) { return ranks[a] - ranks[b]; };
      };
    }

    function recompute() {
      var cmp = (COMPARE[state.sortKey] || COMPARE.severity)();
      var dir = state.sortDir;
      var keep = matcher();
      var rows = [];
      for (var row = 0; row < n; row++) { if (keep(row)) { rows.push(row); } }
      rows.sort(function (a, b) { return dir * cmp(a, b) || a - b; });
      view = rows;
      var pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
      if (state.page >= pages) { state.page = pages - 1; }
    }

    var FIELDS = [
      ["item", "Item", null, true], ["description", "Description", null, true],
      ["quantity", "Quantity", quantity, false], ["unit_price", "Unit price", money, false],
      ["net_amount", "Net", money, false], ["tax_amount", "Tax", money, false],
      ["period", "Period", null, true]
    ];
    var INTERNED = { item: true, description: true, period: true };

    function lineValue(line, key) { return INTERNED[key] ? str(L[key][line]) : L[key][line]; }

    function compareTable(row) {
      var at = rowLines(row, "autotask");
      var code = str(D.currency[row]);  /* a discrepancy's lines are in its currency */
      var hp = rowLines(row, "halopsa");
      var table = node("table", "cmp");
      var head = node("tr");
      head.appendChild(node("th"));
      function sideHeads(lines, cls, label) {
        if (!lines.length) { head.appendChild(node("th", cls, label)); return; }
        lines.forEach(function (line) {
          var th = node("th", cls, label + " ");
          th.appendChild(node("span", "ref", L.ref[line]));
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
            var text = fmt ? fmt(v) : v;
            tr.appendChild(node("td", cls + (f[3] ? "" : " num"), fmt === money ? inCurrency(code, text) : text));
          });
        }
        cells(at, "side-at");
        cells(hp, "side-hp");
        body.appendChild(tr);
      });
      table.appendChild(body);
      return table;
    }

    function detailRow(row) {
      var id = D.id[row], code = str(D.rule[row]);
      var tr = node("tr", "detail");
      tr.id = "detail-" + id;
      var td = node("td");
      td.colSpan = 10;
      var grid = node("div", "detail-grid");
      var left = node("div", "lines");
      left.appendChild(compareTable(row));
      var why = node("div", "why");
      why.appendChild(node("h3", null, ruleTitle(code)));
      var explained = explanations[code];
      why.appendChild(explained ? explained.content.cloneNode(true)
        : node("p", null, "No explanation recorded for this rule."));
      why.appendChild(node("p", "small muted", "ID " + id + " · rule " + (code || "?")));
      grid.appendChild(left);
      grid.appendChild(why);
      td.appendChild(grid);
      tr.appendChild(td);
      return tr;
    }

    function discRow(row) {
      var id = D.id[row], rule = str(D.rule[row]), sev = str(D.severity[row]);
      var open = state.expanded.has(id);
      var tr = node("tr", "disc-row" + (open ? " open" : ""));
      tr.id = "row-" + id;
      tr.dataset.id = id;
      tr.dataset.client = str(D.client[row]) || "";
      tr.dataset.severity = sev || "";
      tr.dataset.rule = rule || "";
      tr.dataset.diff = D.difference[row] === null ? "" : String(D.difference[row]);
      var tdT = node("td", "c-toggle");
      var btn = node("button", "toggle", open ? "▾" : "▸");
      btn.type = "button";
      btn.setAttribute("aria-expanded", open ? "true" : "false");
      btn.setAttribute("aria-label", (open ? "Hide" : "Show") + " lines for " + id);
      tdT.appendChild(btn);
      tr.appendChild(tdT);
      var tdS = node("td", "c-sev");
      tdS.appendChild(badge(sev));
      tr.appendChild(tdS);
      tr.appendChild(node("td", "c-rule", ruleTitle(rule)));
      tr.appendChild(node("td", "c-client", str(D.client[row])));
      tr.appendChild(node("td", "c-measure", str(D.measure[row])));
      var code = str(D.currency[row]);
      tr.appendChild(node("td", "num c-at", inCurrency(code, money(D.autotask_amount[row]))));
      tr.appendChild(node("td", "num c-hp", inCurrency(code, money(D.halopsa_amount[row]))));
      tr.appendChild(node("td", "num c-diff", inCurrency(code, signedMoney(D.difference[row]))));
      tr.appendChild(node("td", "num c-gross", inCurrency(code, signedMoney(D.gross_difference[row]))));
      var msg = node("td", "c-msg", D.message[row]);
      var root = D.root_cause[row];
      if (root) {
        var link = node("a", "root-cause", "follows from " + root);
        link.href = "#row-" + root;
        msg.appendChild(document.createTextNode(" "));
        msg.appendChild(link);
      }
      tr.appendChild(msg);
      return tr;
    }

    function renderActive() {
      var parts = [];
      if (state.client) { parts.push("Client: " + state.client); }
      if (state.clientPart) { parts.push("Client contains: “" + el.client.value.trim() + "”"); }
      if (state.rule) { parts.push("Rule: " + ruleTitle(state.rule)); }
      if (state.sev.size !== knownSev.size) {
        parts.push("Severity: " + (Array.from(state.sev).join(", ") || "none"));
      }
      if (state.q) { parts.push("Search: “" + state.q + "”"); }
      el.active.hidden = !filtersActive();
      el.activeText.textContent = parts.join(" · ");
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
      var start = state.page * PAGE_SIZE;
      var frag = document.createDocumentFragment();
      view.slice(start, start + PAGE_SIZE).forEach(function (row) {
        frag.appendChild(discRow(row));
        if (state.expanded.has(D.id[row])) { frag.appendChild(detailRow(row)); }
      });
      if (!view.length) {
        var tr = node("tr", "no-rows");
        var td = node("td", "empty", "No discrepancies match these filters.");
        td.colSpan = 10;
        tr.appendChild(td);
        frag.appendChild(tr);
      }
      el.body.replaceChildren(frag);
      el.count.textContent = count(view.length) + " of " + counted(n, "discrepancy", "discrepancies");
      renderPager(el.pagers, view.length, PAGE_SIZE, state.page, function (page) {
        state.page = page;
        render();
        el.table.scrollIntoView({ block: "start" });
      });
      renderActive();
      renderSortHeaders();
      renderClients();
    }

    function update() { state.page = 0; recompute(); render(); }

    /* ---- filters ---- */
    (function ruleOptions() {
      var ruleCounts = new Map();
      for (var row = 0; row < n; row++) {
        var code = str(D.rule[row]);
        ruleCounts.set(code, (ruleCounts.get(code) || 0) + 1);
      }
      Array.from(ruleCounts.keys())
        .sort(function (a, b) { return collator.compare(ruleTitle(a), ruleTitle(b)); })
        .forEach(function (code) {
          var o = document.createElement("option");
          o.value = code;
          o.textContent = ruleTitle(code) + " (" + count(ruleCounts.get(code)) + ")";
          el.rule.appendChild(o);
        });
    })();

    /* Suggestions for the client field: clients with discrepancies whose name holds the text. */
    function suggestClients(text) {
      var lower = text.toLowerCase(), found = [];
      if (lower) {
        clientCounts.forEach(function (number, code) {
          var name = str(code);
          if (found.length < SUGGESTIONS && name !== null && name.toLowerCase().indexOf(lower) >= 0) {
            found.push([name, number]);
          }
        });
      }
      el.names.replaceChildren.apply(el.names, found.map(function (entry) {
        var o = document.createElement("option");
        o.value = entry[0];
        o.label = counted(entry[1], "discrepancy", "discrepancies");
        return o;
      }));
    }
    /* A client's exact name filters to that client (none listed if it has no discrepancies);
       other text to the clients whose name holds it. */
    var knownClients = new Set(CL.client);
    clientCounts.forEach(function (_, code) { knownClients.add(code); });
    function setClient(text) {
      var exact = text !== "" && knownClients.has(slot(text)) ? text : "";
      state.client = exact;
      state.clientPart = exact || text === "" ? "" : text.toLowerCase();
    }

    sevBoxes.forEach(function (box) {
      box.addEventListener("change", function () {
        if (box.checked) { state.sev.add(box.value); } else { state.sev.delete(box.value); }
        update();
      });
    });
    el.rule.addEventListener("change", function () { state.rule = el.rule.value; update(); });
    var clientChanged = debounce(function () {
      var text = el.client.value.trim();
      suggestClients(text);
      setClient(text);
      update();
    });
    el.client.addEventListener("input", clientChanged);
    el.search.addEventListener("input", debounce(function () {
      var q = el.search.value.trim().toLowerCase();
      if (q !== state.q) { state.q = q; update(); }
    }));

    function clearFilters() {
      state.sev = new Set(knownSev);
      sevBoxes.forEach(function (b) { b.checked = true; });
      state.rule = ""; el.rule.value = "";
      state.client = ""; state.clientPart = ""; el.client.value = "";
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
      if (!tr || ev.target.closest("a")) { return; }
      var selection = window.getSelection();
      if (selection && String(selection).length && ev.target.tagName !== "BUTTON") { return; }
      toggle(tr.dataset.id);
      var again = document.getElementById("row-" + tr.dataset.id);
      var button = again && again.querySelector("button.toggle");
      if (button && ev.target.tagName === "BUTTON") { button.focus(); }
    });

    /* Show one discrepancy: used by the "Largest problems" links and by #row-… URLs. */
    function goTo(id) {
      var row = D.id.indexOf(id);
      if (row < 0) { return; }
      if (!matcher()(row)) { clearFilters(); }
      var index = view.indexOf(row);
      if (index < 0) { return; }
      state.page = Math.floor(index / PAGE_SIZE);
      state.expanded.add(id);
      render();
      var tr = document.getElementById("row-" + id);
      if (tr) {
        tr.scrollIntoView({ block: "center" });
        tr.classList.add("flash");
      }
    }
    document.querySelectorAll("a.jump[data-target]").forEach(function (a) {
      a.addEventListener("click", function (ev) {
        ev.preventDefault();
        goTo(a.dataset.target);
      });
    });
    function followHash() {
      if (location.hash.indexOf("#row-") === 0) { goTo(decodeURIComponent(location.hash.slice(5))); }
    }
    window.addEventListener("hashchange", followHash);

    /* ---- the client table: every client row, filtered by name, sorted, one page shown ---- */
    var clientTable = document.getElementById("client-table");
    var cbody = document.getElementById("client-body");
    var cn = CL.client.length;
    var cstate = { q: "", key: "", dir: 1, page: 0 };
    var cview = range(cn);
    var cpagers = Array.prototype.slice.call(document.querySelectorAll("[data-client-pager]"));
    var ccount = document.getElementById("client-count");
    var csearch = document.getElementById("client-search");
    var CLIENT_CELLS = [
      ["autotask_gross", money], ["halopsa_gross", money], ["difference", signedMoney]
    ];
    var SEVERITIES = ["blocker", "warning", "info", "expected"];

    function clientRow(c) {
      var name = str(CL.client[c]) || "", code = str(CL.currency[c]) || "";
      var tr = node("tr", "client-row" + (state.client !== "" && name === state.client ? " selected" : ""));
      tr.dataset.client = name;
      tr.dataset.currency = code;
      var first = node("td");
      first.dataset.v = name;
      first.appendChild(node("button", "linklike client-link", name)).type = "button";
      tr.appendChild(first);
      CLIENT_CELLS.forEach(function (cell) {
        var td = node("td", "num" + (cell[0] === "difference" ? " diff" : ""), code + " " + cell[1](CL[cell[0]][c]));
        td.dataset.v = CL[cell[0]][c];
        tr.appendChild(td);
      });
      SEVERITIES.forEach(function (sev) {
        var number = CL[sev][c] || 0;
        var td = node("td", "num");
        td.dataset.v = String(number);
        td.appendChild(number ? node("span", "badge sev-" + sev, count(number)) : node("span", "zero", "0"));
        tr.appendChild(td);
      });
      return tr;
    }

    function renderClients() {
      if (!cbody) { return; }
      var start = cstate.page * CLIENT_PAGE_SIZE;
      var frag = document.createDocumentFragment();
      Array.prototype.slice.call(cview, start, start + CLIENT_PAGE_SIZE).forEach(function (c) {
        frag.appendChild(clientRow(c));
      });
      if (!cview.length) {
        var tr = node("tr", "no-rows");
        var td = node("td", "empty", cn ? "No client matches." : "No clients.");
        td.colSpan = 8;
        tr.appendChild(td);
        frag.appendChild(tr);
      }
      cbody.replaceChildren(frag);
      ccount.textContent = count(cview.length) + " of " + counted(cn, "client", "clients");
      renderPager(cpagers, cview.length, CLIENT_PAGE_SIZE, cstate.page, function (page) {
        cstate.page = page;
        renderClients();
      });
    }

    var clientKeys = {};  /* column -> per-row sort key (cents, or the name's collation rank) */
    function clientKey(key) {
      if (!clientKeys[key]) {
        var keys = new Float64Array(cn);
        if (key === "client") {
          keys = textRanks(cn, function (c) { return str(CL.client[c]); });
        } else {
          for (var c = 0; c < cn; c++) { keys[c] = cents(CL[key][c]); }
        }
        clientKeys[key] = keys;
      }
      return clientKeys[key];
    }

    function recomputeClients() {
      var rows = [];
      var q = cstate.q;
      for (var c = 0; c < cn; c++) {
        if (!q || (str(CL.client[c]) || "").toLowerCase().indexOf(q) >= 0) { rows.push(c); }
      }
      if (cstate.key) {
        var keys = clientKey(cstate.key), dir = cstate.dir;
        rows.sort(function (a, b) { return dir * (keys[a] - keys[b]) || a - b; });
      }
      cview = rows;
      cstate.page = 0;
    }

    if (clientTable && cbody) {
      clientTable.parentNode.parentNode.querySelector(".client-find").hidden = false;
      clientTable.querySelectorAll("thead button.sort").forEach(function (b) {
        b.addEventListener("click", function () {
          var th = b.closest("th");
          cstate.dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
          cstate.key = b.dataset.key;
          clientTable.querySelectorAll("thead th").forEach(function (h) { h.setAttribute("aria-sort", "none"); });
          th.setAttribute("aria-sort", cstate.dir > 0 ? "ascending" : "descending");
          recomputeClients();
          renderClients();
        });
      });
      csearch.addEventListener("input", debounce(function () {
        cstate.q = csearch.value.trim().toLowerCase();
        recomputeClients();
        renderClients();
      }));
      cbody.addEventListener("click", function (ev) {
        var tr = ev.target.closest("tr.client-row");
        if (!tr) { return; }
        el.client.value = tr.dataset.client;
        setClient(tr.dataset.client);
        update();
        document.getElementById("discrepancies").scrollIntoView({ block: "start" });
      });
    }

    recompute();
    render();
    followHash();
    document.body.dataset.ready = "1";
  }
})();
