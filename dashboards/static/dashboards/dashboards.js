/* One dashboard page: history first (downsampled on the server), then live; editing in place.
 *
 * Live messages are coalesced: each widget keeps only the latest value per series
 * until the next animation frame draws it, so a burst faster than the screen
 * refreshes costs memory for one value per series, never a growing queue.
 * window.dashboardStats counts what arrived and what was drawn.
 *
 * The time range (?range=5m|1h|24h, or ?from=&to= as ISO times) sets the span each
 * widget shows and the bucket its history is averaged over, chosen so that a chart
 * gets a few hundred points whatever the span; live values are merged into buckets
 * of the same width. A range that ends in the past is not live.
 *
 * Editors add, change and remove widgets through the REST API without leaving the
 * page, and drag and resize them on a gridstack grid; the layout is saved a moment
 * after the last change. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("dashboard-config").textContent);
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var stats = (window.dashboardStats = { received: 0, drawn: 0, coalesced: 0, frames: 0, errors: 0 });
  var COLORS = ["#2456d6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"];
  var widgetsById = (window.dashboardWidgets = {});
  var notes = config.notes || {};
  var frameRequested = false;
  var gridEl = document.getElementById("dash-grid");
  var liveEl = document.querySelector('[data-testid="live-status"]');
  var emptyEl = document.querySelector('[data-testid="empty-state"]');
  var connectionStatus = "";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function each(map, fn) { Object.keys(map).forEach(function (k) { fn(map[k]); }); }

  // --- Value paths (same rules as dashboards/paths.py) -------------------------------
  function lookup(payload, path) {
    if (path === "") return { ok: true, value: payload };
    var current = payload;
    var keys = path.split(".");
    for (var i = 0; i < keys.length; i++) {
      var key = keys[i];
      if (current !== null && typeof current === "object" && !Array.isArray(current) && Object.prototype.hasOwnProperty.call(current, key)) {
        current = current[key];
      } else if (Array.isArray(current) && /^\d+$/.test(key) && Number(key) < current.length) {
        current = current[Number(key)];
      } else {
        return { ok: false, error: "value path '" + path + "' matches nothing in the payload" };
      }
    }
    return { ok: true, value: current };
  }
  function numberAt(payload, path) {
    var found = lookup(payload, path);
    if (!found.ok) return found;
    if (found.value === null) return { ok: false, missing: true }; // "no value now" (e.g. no Redis): not an error
    if (typeof found.value !== "number" || !isFinite(found.value)) {
      return { ok: false, error: "value at '" + (path || "payload") + "' is not a number: " + JSON.stringify(found.value).slice(0, 40) };
    }
    return { ok: true, value: found.value };
  }

  function format(value, options) {
    if (value === null || value === undefined) return "–";
    var decimals = typeof options.decimals === "number" ? options.decimals : Math.abs(value) >= 100 ? 0 : 2;
    return value.toFixed(decimals) + (options.unit ? " " + options.unit : "");
  }
  function thresholdColor(value, options, fallback) {
    var color = fallback;
    (options.thresholds || []).forEach(function (pair) { if (value >= pair[0]) color = pair[1]; });
    return color;
  }
  function isPlainObject(v) { return v !== null && typeof v === "object" && !Array.isArray(v); }
  function cellText(value, options) {
    if (value === null || value === undefined) return "–";
    if (isPlainObject(value) && !Object.keys(value).length) return "–";
    if (typeof value === "number") return format(value, options);
    if (typeof value === "string") return value;
    if (typeof value === "boolean") return value ? "yes" : "no";
    if (Array.isArray(value) && value.every(function (v) { return !isPlainObject(v) && !Array.isArray(v); })) {
      return value.map(function (v) { return cellText(v, options); }).join(", ");
    }
    return JSON.stringify(value);
  }

  // --- Time range ---------------------------------------------------------------------
  var RELATIVE = { "5m": 5 * 60e3, "1h": 3600e3, "24h": 86400e3 };
  var STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

  function parseTime(text) {
    if (!text) return null;
    if (/^\d+$/.test(text)) return Number(text);
    var t = Date.parse(text);
    return isNaN(t) ? null : t;
  }
  function readRange(search) {
    var params = new URLSearchParams(search);
    var key = params.get("range");
    if (key && RELATIVE[key]) return { kind: "relative", key: key, span: RELATIVE[key] };
    var from = parseTime(params.get("from")), to = parseTime(params.get("to"));
    if (from !== null && to !== null && from < to) return { kind: "absolute", from: from, to: to };
    return { kind: "widget" };
  }
  function isoTime(ms) { return new Date(ms).toISOString().replace(/\.000Z$/, "Z"); }
  function writeRange(r) {
    var params = new URLSearchParams(location.search);
    ["range", "from", "to"].forEach(function (k) { params.delete(k); });
    if (r.kind === "relative") params.set("range", r.key);
    if (r.kind === "absolute") { params.set("from", isoTime(r.from)); params.set("to", isoTime(r.to)); }
    var query = params.toString();
    history.replaceState(history.state, "", location.pathname + (query ? "?" + query : "") + location.hash);
  }
  var range = readRange(location.search);
  function rangeIsLive() { return range.kind !== "absolute" || range.to > Date.now(); }

  // The bucket width (ms) that gives a chart about one point per 2 px (60 to 1000 points).
  function pickStep(span, widthPx) {
    var target = Math.max(60, Math.min(1000, Math.floor(widthPx / 2)));
    var raw = span / target;
    for (var i = 0; i < STEPS.length; i++) if (STEPS[i] * 1000 >= raw) return STEPS[i] * 1000;
    return Math.ceil(raw / 86400e3) * 86400e3;
  }
  function describeStep(ms) {
    var s = ms / 1000;
    if (s < 60) return s + " s";
    if (s < 3600) return s / 60 + " min";
    if (s < 86400) return s / 3600 + " h";
    return s / 86400 + " d";
  }

  // --- Widgets ------------------------------------------------------------------------
  function Widget(spec, item) {
    this.spec = spec;
    this.item = item;
    this.node = item.querySelector(".widget");
    this.body = item.querySelector(".widget-body");
    this.statusEl = item.querySelector(".widget-status");
    this.options = spec.options || {};
    this.notes = notes[spec.channel] || {};
    this.maxRows = this.options.rows || 20;
    this.observers = [];
    this.plots = [];
    this.generation = 0;
    this.problem = "";
    this.setup();
    this.reset();
  }

  // Start over for the current range. Table and log rows are live messages: they stay
  // while the range is live (they are not history) and go for a past range.
  Widget.prototype.reset = function () {
    var keepRows = this.rows !== undefined && rangeIsLive();
    this.pending = {}; // path -> [ts, value], latest only
    if (!keepRows) {
      this.pendingRows = []; // table/log: at most `rows` messages
      this.rows = []; // table: [{key, ts, payload}]
      if (this.spec.kind === "log") this.body.textContent = "";
    }
    this.dirty = false;
    this.xs = [];
    this.ys = this.spec.value_paths.map(function () { return []; });
    this.bucket = null; // the live bucket being filled: {b, sums, counts}
    this.latest = {};
    this.first = null;
    this.loaded = false;
    this.generation++;
    var view = this.view();
    this.step = pickStep(view.span, (this.body && this.body.clientWidth) || 600);
    if (this.spec.kind === "table") this.renderTable();
    if (this.spec.kind === "table" || this.spec.kind === "log") {
      this.setNote(rangeIsLive() ? "" : "Shows live messages only: nothing to show for a past range.");
    }
    this.draw();
  };

  // The span this widget shows now, in ms since the epoch.
  Widget.prototype.view = function () {
    if (range.kind === "absolute") return { from: range.from, to: range.to, span: range.to - range.from };
    var span = range.kind === "relative" ? range.span : (this.options.window || 300) * 1000;
    var now = Date.now();
    return { from: now - span, to: now, span: span };
  };

  Widget.prototype.setStatus = function (text) {
    if (this.problem === text) return;
    this.problem = text;
    if (this.statusEl) this.statusEl.textContent = text;
  };
  Widget.prototype.setNote = function (text) {
    var note = this.node.querySelector(".widget-note");
    if (!text) { if (note) note.remove(); return; }
    if (!note) { note = el("p", "widget-note muted"); this.body.parentNode.insertBefore(note, this.body); }
    note.textContent = text;
  };

  Widget.prototype.setup = function () {
    var kind = this.spec.kind;
    if (kind === "line") this.plot = this.makePlot(this.body, true);
    if (kind === "stat") {
      this.valueEl = el("span", "stat-value", "–");
      this.deltaEl = el("span", "stat-delta", "");
      var row = el("div");
      row.appendChild(this.valueEl);
      row.appendChild(this.deltaEl);
      this.body.appendChild(row);
      var sparkBox = el("div", "stat-spark");
      this.body.appendChild(sparkBox);
      this.spark = this.makePlot(sparkBox, false);
    }
    if (kind === "gauge") {
      var ns = "http://www.w3.org/2000/svg";
      var svg = document.createElementNS(ns, "svg");
      svg.setAttribute("viewBox", "0 0 100 55");
      svg.style.width = "100%";
      svg.style.maxHeight = "100%";
      var track = document.createElementNS(ns, "path");
      track.setAttribute("d", "M10 50 A40 40 0 0 1 90 50");
      track.setAttribute("fill", "none");
      track.setAttribute("stroke", "#dde1ea");
      track.setAttribute("stroke-width", "9");
      this.arc = document.createElementNS(ns, "path");
      this.arc.setAttribute("fill", "none");
      this.arc.setAttribute("stroke-width", "9");
      svg.appendChild(track);
      svg.appendChild(this.arc);
      this.body.appendChild(svg);
      this.valueEl = el("div", "gauge-value", "–");
      this.body.appendChild(this.valueEl);
    }
    if (kind === "table" || kind === "log") this.body.classList.add("scroll");
  };

  Widget.prototype.makePlot = function (box, axes) {
    var self = this;
    var series = [{}].concat(this.spec.value_paths.map(function (path, i) {
      var colors = self.options.colors || [];
      return { label: path, stroke: colors[i] || COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
               value: function (u, v) { return format(v, self.options); } };
    }));
    var size = function () {
      return { width: Math.max(100, box.clientWidth), height: Math.max(30, box.clientHeight - (axes ? 30 : 0)) };
    };
    // Charts with axes show the whole range, not only the part that has data: draw() sets
    // the x scale (uPlot's own auto-range widens a single point to a day).
    var x = axes ? { time: true, auto: false } : { time: true };
    var opts = Object.assign(size(), {
      series: series, legend: { show: axes }, cursor: { show: axes },
      axes: axes ? [{}, { size: 50 }] : [{ show: false }, { show: false }],
      scales: { x: x },
    });
    var plot = new uPlot(opts, [[]].concat(this.spec.value_paths.map(function () { return []; })), box);
    this.plots.push(plot);
    if (window.ResizeObserver) {
      var observer = new ResizeObserver(function () { plot.setSize(size()); });
      observer.observe(box);
      this.observers.push(observer);
    }
    return plot;
  };

  Widget.prototype.destroy = function () {
    this.generation++;
    this.observers.forEach(function (o) { o.disconnect(); });
    this.plots.forEach(function (p) { p.destroy(); });
    this.observers = [];
    this.plots = [];
  };

  // History: buckets of `step` over the range, averaged on the server.
  Widget.prototype.loadHistory = function () {
    var self = this;
    var kind = this.spec.kind;
    if (!this.spec.value_paths.length || kind === "table" || kind === "log") return;
    var view = this.view();
    var generation = this.generation;
    var url = "/api/dashboards/widgets/" + this.spec.id + "/series/?from=" + Math.floor(view.from) +
      "&to=" + Math.ceil(view.to) + "&step=" + this.step;
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
        if (generation !== self.generation) return; // the range changed meanwhile
        self.loaded = true;
        if (!res.ok) { self.setStatus("history: " + (res.body.detail || "error")); return; }
        var times = {};
        self.spec.value_paths.forEach(function (path, i) {
          (res.body.series[path] || []).forEach(function (row) {
            (times[row.t] = times[row.t] || {})[i] = row.avg;
          });
        });
        var keys = Object.keys(times).map(Number).sort(function (a, b) { return a - b; });
        // History goes before anything that already arrived live.
        var liveStart = self.xs.length ? self.xs[0] * 1000 : Infinity;
        var xs = [], ys = self.spec.value_paths.map(function () { return []; });
        keys.forEach(function (t) {
          if (t >= liveStart) return;
          xs.push(t / 1000);
          ys.forEach(function (col, i) { col.push(times[t][i] === undefined ? null : times[t][i]); });
        });
        self.xs = xs.concat(self.xs);
        self.ys = ys.map(function (col, i) { return col.concat(self.ys[i]); });
        if (xs.length && self.first === null) self.first = ys[0][0];
        self.spec.value_paths.forEach(function (path, i) {
          for (var k = self.ys[i].length - 1; k >= 0; k--) {
            if (self.ys[i][k] !== null) { if (!(path in self.latest)) self.latest[path] = self.ys[i][k]; break; }
          }
        });
        self.draw();
      })
      .catch(function () { if (generation === self.generation) self.setStatus("history could not be loaded"); });
  };

  // Called for every live message: keep the latest value per series, nothing more.
  Widget.prototype.offer = function (payload, ts) {
    var kind = this.spec.kind;
    if (range.kind === "absolute" && ts > range.to) return;
    if (kind === "table" || kind === "log") {
      this.pendingRows.push([ts, payload]);
      if (this.pendingRows.length > this.maxRows) { this.pendingRows.shift(); stats.coalesced++; }
      this.dirty = true;
      return;
    }
    var problem = "";
    for (var i = 0; i < this.spec.value_paths.length; i++) {
      var path = this.spec.value_paths[i];
      var found = numberAt(payload, path);
      if (!found.ok) {
        if (!found.missing) problem = found.error;
        else if (this.latest[path] !== null) { this.latest[path] = null; this.dirty = true; } // "no value now"
        continue;
      }
      if (this.pending[path]) stats.coalesced++;
      this.pending[path] = [ts, found.value];
      this.dirty = true;
    }
    if (problem) { stats.errors++; }
    this.setStatus(problem);
  };

  Widget.prototype.apply = function () {
    var self = this;
    this.dirty = false;
    var kind = this.spec.kind;
    if (kind === "table" || kind === "log") { this.applyRows(); return; }
    var paths = this.spec.value_paths;
    var newest = 0;
    paths.forEach(function (path) { if (self.pending[path]) newest = Math.max(newest, self.pending[path][0]); });
    if (!newest) { this.draw(); return; }
    var x = newest / 1000;
    var last = this.xs.length - 1;
    var b = Math.floor(newest / this.step);
    if (this.bucket && this.bucket.b === b && last >= 0) {
      // Same bucket as the previous live point: it becomes the mean of the bucket's values.
      var bucket = this.bucket;
      this.xs[last] = Math.max(this.xs[last], x);
      paths.forEach(function (path, i) {
        var p = self.pending[path];
        if (!p) return;
        bucket.sums[i] += p[1];
        bucket.counts[i] += 1;
        self.ys[i][last] = bucket.sums[i] / bucket.counts[i];
      });
    } else {
      if (last >= 0 && x <= this.xs[last]) x = this.xs[last] + 0.001;
      this.xs.push(x);
      this.bucket = { b: b, sums: paths.map(function () { return 0; }), counts: paths.map(function () { return 0; }) };
      paths.forEach(function (path, i) {
        var p = self.pending[path];
        self.ys[i].push(p ? p[1] : null);
        if (p) { self.bucket.sums[i] = p[1]; self.bucket.counts[i] = 1; }
      });
    }
    paths.forEach(function (path) {
      var p = self.pending[path];
      if (p) { self.latest[path] = p[1]; stats.drawn++; }
    });
    if (this.first === null && this.ys[0].length) this.first = this.ys[0][0];
    this.pending = {};
    var cutoff = this.view().from / 1000;
    var drop = 0;
    while (drop < this.xs.length && this.xs[drop] < cutoff) drop++;
    if (drop) { this.xs.splice(0, drop); this.ys.forEach(function (col) { col.splice(0, drop); }); }
    this.draw();
  };

  Widget.prototype.showEmpty = function (on) {
    var note = this.body.querySelector(".widget-empty");
    if (on && !note) {
      note = el("p", "widget-empty muted", rangeIsLive() ? "No data in this range yet: waiting for messages" : "No data in this range");
      this.body.appendChild(note);
    } else if (!on && note) {
      note.remove();
    }
  };

  Widget.prototype.noValue = function (path) { return this.notes[path] || "n/a"; };

  Widget.prototype.draw = function () {
    var self = this;
    var kind = this.spec.kind;
    var data = [this.xs].concat(this.ys);
    if (kind === "line" && this.plot) {
      // The first bucket may start a little before the range: keep it in view.
      var view = this.view();
      var lo = Math.min(view.from / 1000, this.xs.length ? this.xs[0] : Infinity);
      var hi = Math.max(view.to / 1000, this.xs.length ? this.xs[this.xs.length - 1] : -Infinity);
      this.plot.setData(data, false);
      this.plot.setScale("x", { min: lo, max: hi });
      this.showEmpty(!this.xs.length && this.loaded);
    }
    var path = this.spec.value_paths[0];
    var value = this.latest[path];
    if (kind === "stat") {
      if (this.spark) this.spark.setData(data);
      this.valueEl.textContent = value === null ? this.noValue(path) : format(value, this.options);
      this.valueEl.classList.toggle("no-value", value === null);
      this.valueEl.style.color = typeof value === "number" ? thresholdColor(value, this.options, "") : "";
      if (typeof value === "number" && typeof this.first === "number") {
        var delta = value - this.first;
        this.deltaEl.textContent = (delta >= 0 ? "▲ " : "▼ ") + format(Math.abs(delta), this.options);
        this.deltaEl.className = "stat-delta " + (delta >= 0 ? "up" : "down");
      } else {
        this.deltaEl.textContent = "";
      }
    }
    if (kind === "gauge") {
      if (typeof value === "number") {
        var min = typeof this.options.min === "number" ? this.options.min : 0;
        var max = typeof this.options.max === "number" ? this.options.max : 100;
        var frac = Math.max(0, Math.min(1, (value - min) / ((max - min) || 1)));
        var angle = Math.PI * (1 - frac);
        var ex = 50 + 40 * Math.cos(angle), ey = 50 - 40 * Math.sin(angle);
        this.arc.setAttribute("d", "M10 50 A40 40 0 0 1 " + ex.toFixed(2) + " " + ey.toFixed(2));
        this.arc.setAttribute("stroke", thresholdColor(value, this.options, COLORS[0]));
        this.valueEl.textContent = format(value, this.options);
      } else {
        this.arc.setAttribute("d", "");
        this.valueEl.textContent = value === null ? this.noValue(path) : "–";
      }
    }
    if (kind === "bar") {
      var values = this.spec.value_paths.map(function (p) { return self.latest[p]; });
      var top = typeof this.options.max === "number" ? this.options.max : Math.max.apply(null, values.map(function (v) { return Math.abs(v || 0); }).concat([1e-9]));
      this.body.textContent = "";
      this.spec.value_paths.forEach(function (p, i) {
        var row = el("div", "bar-row");
        row.appendChild(el("span", "bar-label", p));
        var bar = el("span", "bar");
        var v = values[i];
        var number = typeof v === "number";
        bar.style.width = number ? Math.min(100, (Math.abs(v) / top) * 70) + "%" : "0";
        bar.style.background = (self.options.colors || [])[i] || (number ? thresholdColor(v, self.options, COLORS[i % COLORS.length]) : COLORS[i % COLORS.length]);
        row.appendChild(bar);
        row.appendChild(el("span", v === null ? "muted" : "", v === null ? self.noValue(p) : format(v, self.options)));
        self.body.appendChild(row);
      });
    }
  };

  Widget.prototype.applyRows = function () {
    var self = this;
    var rows = this.pendingRows;
    this.pendingRows = [];
    if (this.spec.kind === "log") {
      rows.forEach(function (item) {
        stats.drawn++;
        var time = new Date(item[0]).toLocaleTimeString();
        self.body.insertBefore(el("p", "log-line", time + "  " + JSON.stringify(item[1])), self.body.firstChild);
        while (self.body.childNodes.length > self.maxRows) self.body.removeChild(self.body.lastChild);
      });
      return;
    }
    var key = this.options.key;
    rows.forEach(function (item) {
      stats.drawn++;
      var row = { ts: item[0], payload: item[1], key: null };
      if (typeof key === "string") {
        var found = lookup(item[1], key);
        row.key = found.ok ? JSON.stringify(found.value) : "";
        // One row per key value: the newest message replaces that key's row in place.
        for (var i = 0; i < self.rows.length; i++) {
          if (self.rows[i].key === row.key) { self.rows[i] = row; return; }
        }
        self.rows.push(row);
      } else {
        self.rows.unshift(row);
      }
    });
    if (this.rows.length > this.maxRows) {
      if (typeof key === "string") {
        this.rows.sort(function (a, b) { return b.ts - a.ts; });
        this.rows = this.rows.slice(0, this.maxRows);
      } else {
        this.rows.length = this.maxRows;
      }
    }
    this.renderTable();
  };

  /* A table of the latest messages, one column per value path. An object at a path
   * becomes one column per key ("frames_in publish"), so per-type figures read as a
   * table. When the only path holds a list of objects (e.g. the latest job runs), the
   * table shows that list from the newest message, one row per item. */
  Widget.prototype.renderTable = function () {
    var self = this;
    var paths = this.spec.value_paths.length ? this.spec.value_paths : [""];
    var table = el("table", "data-table");
    var newest = this.rows.length ? this.rows.reduce(function (a, b) { return a.ts >= b.ts ? a : b; }) : null;
    var listAt = paths.length === 1 && newest ? lookup(newest.payload, paths[0]) : null;
    if (listAt && listAt.ok && Array.isArray(listAt.value) && listAt.value.every(isPlainObject)) {
      var keys = [];
      listAt.value.forEach(function (obj) { Object.keys(obj).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); }); });
      var head = el("tr");
      (keys.length ? keys : [paths[0]]).forEach(function (k) { head.appendChild(el("th", "", k)); });
      table.appendChild(el("thead")).appendChild(head);
      var tbody = table.appendChild(el("tbody"));
      listAt.value.slice(0, 200).forEach(function (obj) {
        var tr = el("tr");
        keys.forEach(function (k) { tr.appendChild(el("td", "", cellText(obj[k], self.options))); });
        tbody.appendChild(tr);
      });
      if (!listAt.value.length) {
        var none = el("td", "muted", "none");
        none.colSpan = Math.max(1, keys.length);
        tbody.appendChild(el("tr")).appendChild(none);
      }
      var caption = el("caption", "muted", "as of " + new Date(newest.ts).toLocaleTimeString());
      table.insertBefore(caption, table.firstChild);
    } else {
      // Columns: time, then each path; an object-valued path splits into one column per key seen.
      var columns = [];
      paths.forEach(function (p) {
        var subkeys = null;
        self.rows.forEach(function (row) {
          var found = lookup(row.payload, p);
          if (found.ok && isPlainObject(found.value)) {
            subkeys = subkeys || [];
            Object.keys(found.value).forEach(function (k) { if (subkeys.indexOf(k) < 0) subkeys.push(k); });
          }
        });
        if (subkeys && subkeys.length) {
          subkeys.sort().forEach(function (k) { columns.push({ path: p, sub: k, label: (p || "payload") + " " + k }); });
        } else {
          columns.push({ path: p, sub: null, label: p || "payload" });
        }
      });
      var headRow = el("tr");
      headRow.appendChild(el("th", "", "time"));
      columns.forEach(function (c) { headRow.appendChild(el("th", "", c.label)); });
      table.appendChild(el("thead")).appendChild(headRow);
      var body = table.appendChild(el("tbody"));
      this.rows.forEach(function (row) {
        var tr = el("tr");
        tr.appendChild(el("td", "", new Date(row.ts).toLocaleTimeString()));
        columns.forEach(function (c) {
          var found = lookup(row.payload, c.path);
          var value = found.ok ? (c.sub === null ? found.value : isPlainObject(found.value) ? found.value[c.sub] : undefined) : undefined;
          var td = el("td", typeof value === "number" ? "num" : "", cellText(value, self.options));
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    }
    var old = this.body.querySelector("table");
    if (old) this.body.replaceChild(table, old); else this.body.appendChild(table);
  };

  function onFrame() {
    frameRequested = false;
    stats.frames++;
    each(widgetsById, function (w) { if (w.dirty) w.apply(); });
  }

  function onMessage(channel, payload, ts) {
    stats.received++;
    each(widgetsById, function (w) { if (w.spec.channel === channel) w.offer(payload, ts); });
    if (!frameRequested) {
      frameRequested = true;
      // A hidden tab gets no animation frames; a timer keeps memory bounded there too.
      if (document.hidden) setTimeout(onFrame, 250); else requestAnimationFrame(onFrame);
    }
  }

  // --- Live connection ----------------------------------------------------------------
  var live = window.DashboardsLive.connect({
    onMessage: onMessage,
    onStatus: function (status) { connectionStatus = status; showLiveStatus(); },
    onError: function (error) {
      // A refused subscribe names its channel in the message: show it on those widgets.
      each(widgetsById, function (w) { if (w.spec.channel === error.channel) w.setStatus(error.message || error.code); });
    },
  });

  function wantedChannels() {
    if (!rangeIsLive()) return [];
    var channels = {};
    each(widgetsById, function (w) { channels[w.spec.channel] = true; });
    return Object.keys(channels);
  }
  function showLiveStatus() {
    var text = connectionStatus;
    if (!config.widgets.length) text = "no widgets yet";
    else if (!rangeIsLive()) text = "not live: past range";
    else if (!wantedChannels().length) text = "no live channels";
    liveEl.textContent = text;
    liveEl.classList.toggle("live", text === "live");
  }
  function refreshChannels() {
    live.setChannels(wantedChannels());
    showLiveStatus();
  }

  // --- Widgets on the grid ------------------------------------------------------------
  function specById(id) {
    for (var i = 0; i < config.widgets.length; i++) if (config.widgets[i].id === id) return config.widgets[i];
    return null;
  }

  // The same markup as templates/dashboards/_widget.html.
  function widgetItem(spec) {
    var item = el("div", "grid-stack-item");
    item.dataset.widget = spec.id;
    item.dataset.testid = "widget-" + spec.id;
    var section = el("section", "grid-stack-item-content widget widget-" + spec.kind);
    section.setAttribute("aria-label", spec.title);
    fillWidget(section, spec);
    item.appendChild(section);
    return item;
  }
  function fillWidget(section, spec) {
    section.className = "grid-stack-item-content widget widget-" + spec.kind;
    section.setAttribute("aria-label", spec.title);
    section.textContent = "";
    var header = el("header");
    header.appendChild(el("h2", "", spec.title));
    var tools = el("span", "widget-tools");
    tools.hidden = true;
    header.appendChild(tools);
    section.appendChild(header);
    if (spec.status === "ok") {
      section.appendChild(el("div", "widget-body"));
      var status = el("p", "widget-status");
      status.setAttribute("data-testid", "widget-status");
      section.appendChild(status);
    } else {
      var denied = el("p", "widget-denied", spec.status === "no_access" ? "no access" : spec.message);
      denied.setAttribute("data-testid", "widget-status");
      section.appendChild(denied);
    }
  }

  function startWidget(spec, item) {
    if (spec.status !== "ok") return null;
    var w = new Widget(spec, item);
    widgetsById[spec.id] = w;
    w.loadHistory();
    return w;
  }

  var editable = !!document.getElementById("edit-toggle");
  var grid = window.GridStack.init({
    column: 12,
    cellHeight: 150,
    margin: 6,
    handle: ".widget header",
    staticGrid: true, // editors turn editing on with the Edit button; viewers never can
    animate: true,
    alwaysShowResizeHandle: true,
    resizable: { handles: "se" },
    columnOpts: { breakpoints: [{ w: 700, c: 1 }] },
  }, gridEl);
  window.dashboardGrid = grid;
  // After the grid has sized the widgets: each chart picks its bucket width from its own width.
  config.widgets.forEach(function (spec) {
    var item = gridEl.querySelector('[data-widget="' + spec.id + '"]');
    if (item) startWidget(spec, item);
  });

  // --- Time-range picker --------------------------------------------------------------
  var rangeSelect = document.getElementById("range-select");
  var customBox = document.getElementById("range-custom");
  var fromInput = document.getElementById("range-from");
  var toInput = document.getElementById("range-to");
  var rangeNote = document.querySelector('[data-testid="range-note"]');

  function localInput(ms) {
    var d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 19);
  }
  function showRangeNote() {
    var steps = {};
    each(widgetsById, function (w) { if (w.spec.kind !== "table" && w.spec.kind !== "log") steps[w.step] = true; });
    var list = Object.keys(steps).map(Number).sort(function (a, b) { return a - b; });
    var parts = [];
    if (range.kind === "absolute") {
      parts.push(new Date(range.from).toLocaleString() + " – " + new Date(range.to).toLocaleString());
    }
    if (list.length) parts.push("averaged over " + list.map(describeStep).join(" / "));
    parts.push(rangeIsLive() ? "live" : "no live updates (past range)");
    rangeNote.textContent = parts.join(" · ");
  }
  function applyRange(next) {
    range = next;
    writeRange(range);
    each(widgetsById, function (w) { w.reset(); w.loadHistory(); });
    refreshChannels();
    showRangeNote();
  }
  function showPicker() {
    rangeSelect.value = range.kind === "relative" ? range.key : range.kind === "absolute" ? "custom" : "";
    customBox.hidden = range.kind !== "absolute";
    if (range.kind === "absolute") { fromInput.value = localInput(range.from); toInput.value = localInput(range.to); }
  }
  rangeSelect.onchange = function () {
    var value = rangeSelect.value;
    if (value === "custom") {
      customBox.hidden = false;
      if (!fromInput.value) {
        var now = Date.now();
        fromInput.value = localInput(now - 3600e3);
        toInput.value = localInput(now);
      }
      fromInput.focus();
      return;
    }
    customBox.hidden = true;
    applyRange(value ? { kind: "relative", key: value, span: RELATIVE[value] } : { kind: "widget" });
  };
  document.getElementById("range-apply").onclick = function () {
    // datetime-local values are local wall-clock times without a zone: Date reads them as local.
    var from = fromInput.value ? new Date(fromInput.value).getTime() : NaN;
    var to = toInput.value ? new Date(toInput.value).getTime() : NaN;
    if (isNaN(from) || isNaN(to) || from >= to) {
      rangeNote.textContent = "Choose a start before the end.";
      return;
    }
    applyRange({ kind: "absolute", from: from, to: to });
  };
  // A custom range that reaches into the future goes quiet when it ends.
  setInterval(function () {
    if (range.kind === "absolute" && live.wanted.size && !rangeIsLive()) { refreshChannels(); showRangeNote(); }
  }, 5000);
  showPicker();
  showRangeNote();
  refreshChannels();

  function updateEmpty() {
    emptyEl.hidden = config.widgets.length > 0;
    gridEl.classList.toggle("is-empty", !config.widgets.length);
  }
  updateEmpty();

  if (!editable) return;

  // --- Editing: add, change and remove widgets; drag and resize; the layout is saved ------------
  var toggle = document.getElementById("edit-toggle");
  var form = document.getElementById("widget-form");
  var formTitle = form.querySelector('[data-testid="widget-form-title"]');
  var submitButton = form.querySelector('[data-testid="widget-submit"]');
  var cancelButton = document.getElementById("widget-cancel");
  var formError = form.querySelector('[data-testid="widget-form-error"]');
  var formDone = form.querySelector('[data-testid="widget-form-done"]');
  var kindHint = document.getElementById("kind-hint");
  var layoutStatus = document.querySelector('[data-testid="layout-status"]');
  var editing = false;
  var editingId = null;
  var saveTimer = null;
  var saving = false;
  var saveAgain = false;
  var HINTS = {
    line: "Line chart: one series per value path (up to 8), history and live.",
    gauge: "Gauge: exactly one value path; set Min and Max under More options.",
    stat: "Single stat: exactly one value path, with a sparkline and the change over the range.",
    bar: "Bar chart: the latest value of each value path.",
    table: "Table: the latest messages, one column per value path; “One row per value of” keeps one row per key.",
    log: "Event log: the latest whole messages; value paths are not needed.",
  };
  var OPTION_FIELDS = { decimals: "int", min: "number", max: "number", window: "int", rows: "int", key: "text" };

  function api(method, url, body, extra) {
    return fetch(url, Object.assign({
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    }, extra || {})).then(function (r) {
      if (r.status === 204) return { ok: true, status: 204, body: null };
      return r.json().catch(function () { return { detail: "HTTP " + r.status }; })
        .then(function (answer) { return { ok: r.ok, status: r.status, body: answer }; });
    });
  }
  // The API's JSON error as one line: {"detail", "code", "errors": {field: [messages]}}.
  function errorText(body, fallback) {
    body = body || {};
    var errors = body.errors || {};
    var text = Object.keys(errors).map(function (k) {
      return (k === "non_field_errors" ? "" : k + ": ") + [].concat(errors[k]).join(" ");
    }).join("; ");
    return text || body.detail || fallback;
  }

  function setEditing(on) {
    editing = on;
    form.hidden = !on;
    toggle.textContent = on ? "Done" : "Edit";
    toggle.setAttribute("aria-pressed", on ? "true" : "false");
    document.body.classList.toggle("dash-editing", on);
    gridEl.querySelectorAll(".widget-tools").forEach(function (t) { t.hidden = !on; });
    grid.setStatic(!on || grid.getColumn() !== 12);
    if (!on) { resetForm(); flushLayout(); }
  }
  toggle.onclick = function () { setEditing(!editing); };
  var emptyAdd = document.getElementById("empty-add");
  if (emptyAdd) emptyAdd.onclick = function () { setEditing(true); form.elements.kind.focus(); };

  function showKindHint() { kindHint.textContent = HINTS[form.elements.kind.value] || ""; }
  form.elements.kind.onchange = showKindHint;
  showKindHint();

  function clearErrors() {
    formError.textContent = "";
    formDone.textContent = "";
    form.querySelectorAll("[data-error-for]").forEach(function (n) { n.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
  }
  function showErrors(body, fallback) {
    var errors = (body && body.errors) || {};
    Object.keys(errors).forEach(function (field) {
      var slot = form.querySelector('[data-error-for="' + field + '"]');
      if (slot) slot.textContent = [].concat(errors[field]).join(" ");
      var input = form.elements[field];
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
      if (field === "options") form.querySelector(".editor-more").open = true;
    });
    formError.textContent = errorText(body, fallback);
  }

  function resetForm() {
    editingId = null;
    form.reset();
    clearErrors();
    formTitle.textContent = "Add a widget";
    submitButton.textContent = "Add widget";
    cancelButton.hidden = true;
    showKindHint();
  }
  cancelButton.onclick = resetForm;

  function fillForm(spec) {
    resetForm();
    editingId = spec.id;
    var f = form.elements;
    f.kind.value = spec.kind;
    f.title.value = spec.title;
    f.channel.value = spec.channel || "";
    f.value_paths.value = (spec.value_paths || []).join(", ");
    f.unit.value = (spec.options || {}).unit || "";
    Object.keys(OPTION_FIELDS).forEach(function (name) {
      var v = (spec.options || {})[name];
      f[name].value = v === undefined || v === null ? "" : v;
    });
    formTitle.textContent = "Change “" + spec.title + "”";
    submitButton.textContent = "Save widget";
    cancelButton.hidden = false;
    showKindHint();
    form.scrollIntoView({ block: "nearest" });
    f.title.focus();
  }

  // The form as a widget body; options the form does not show (thresholds, colours) are kept.
  function formBody() {
    var f = form.elements;
    var base = editingId !== null ? (specById(editingId) || {}).options || {} : {};
    var options = Object.assign({}, base);
    var problems = {};
    if (f.unit.value.trim()) options.unit = f.unit.value.trim(); else delete options.unit;
    Object.keys(OPTION_FIELDS).forEach(function (name) {
      var raw = f[name].value.trim();
      if (raw === "") { delete options[name]; return; }
      if (OPTION_FIELDS[name] === "text") { options[name] = raw; return; }
      var number = Number(raw);
      if (!isFinite(number) || (OPTION_FIELDS[name] === "int" && Math.floor(number) !== number)) {
        problems.options = [name + " must be " + (OPTION_FIELDS[name] === "int" ? "a whole number" : "a number")];
        return;
      }
      options[name] = number;
    });
    return {
      problems: problems,
      body: {
        kind: f.kind.value, title: f.title.value.trim(), channel: f.channel.value.trim(),
        value_paths: f.value_paths.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean),
        options: options,
      },
    };
  }

  function addTools(item, spec) {
    var tools = item.querySelector(".widget-tools");
    tools.textContent = "";
    tools.hidden = !editing;
    var grip = el("button", "widget-grip", "⠿");
    grip.type = "button";
    grip.title = "Drag to move; arrow keys move, Shift + arrow keys resize";
    grip.setAttribute("aria-label", "move or resize " + spec.title + " (arrow keys; Shift to resize)");
    grip.onkeydown = function (event) { keyboardLayout(item, event); };
    tools.appendChild(grip);
    if (spec.status === "ok") {
      var edit = el("button", "", "✎");
      edit.type = "button";
      edit.title = "change this widget";
      edit.setAttribute("aria-label", "change " + spec.title);
      edit.onclick = function () { fillForm(specById(spec.id) || spec); };
      tools.appendChild(edit);
    }
    var remove = el("button", "widget-remove", "✕");
    remove.type = "button";
    remove.title = "remove this widget";
    remove.setAttribute("aria-label", "remove " + spec.title);
    var armed = null;
    remove.onclick = function () {
      // Two clicks: the first asks, the second removes (a dialog would block the live page).
      if (!armed) {
        remove.textContent = "Remove?";
        remove.classList.add("armed");
        armed = setTimeout(function () { armed = null; remove.textContent = "✕"; remove.classList.remove("armed"); }, 4000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      removeWidget(spec.id, item, remove);
    };
    tools.appendChild(remove);
  }

  function keyboardLayout(item, event) {
    var node = item.gridstackNode;
    if (!node || !editing) return;
    var dx = { ArrowLeft: -1, ArrowRight: 1 }[event.key] || 0;
    var dy = { ArrowUp: -1, ArrowDown: 1 }[event.key] || 0;
    if (!dx && !dy) return;
    event.preventDefault();
    if (event.shiftKey) {
      grid.update(item, { w: Math.max(1, Math.min(12 - node.x, node.w + dx)), h: Math.max(1, Math.min(6, node.h + dy)) });
    } else {
      grid.update(item, { x: Math.max(0, Math.min(12 - node.w, node.x + dx)), y: Math.max(0, node.y + dy) });
    }
    item.querySelector(".widget-grip").focus();
  }

  config.widgets.forEach(function (spec) {
    var item = gridEl.querySelector('[data-widget="' + spec.id + '"]');
    if (item) addTools(item, spec);
  });

  form.onsubmit = function (event) {
    event.preventDefault();
    clearErrors();
    var built = formBody();
    if (Object.keys(built.problems).length) { showErrors({ errors: built.problems }, "check the form"); return; }
    var id = editingId;
    submitButton.disabled = true;
    var request = id === null
      ? api("POST", "/api/dashboards/" + config.id + "/widgets/", built.body)
      : api("PATCH", "/api/dashboards/widgets/" + id + "/", built.body);
    request.then(function (res) {
      if (!res.ok) { showErrors(res.body, id === null ? "could not add the widget" : "could not save the widget"); return; }
      if (id === null) widgetAdded(res.body); else widgetChanged(res.body);
    }).catch(function () {
      formError.textContent = "could not reach the server; nothing was saved";
    }).then(function () { submitButton.disabled = false; });
  };

  function widgetAdded(spec) {
    config.widgets.push(spec);
    var item = widgetItem(spec);
    item.setAttribute("gs-x", spec.x);
    item.setAttribute("gs-y", spec.y);
    item.setAttribute("gs-w", spec.w);
    item.setAttribute("gs-h", spec.h);
    item.setAttribute("gs-max-h", 6);
    item.setAttribute("gs-id", spec.id);
    gridEl.appendChild(item);
    grid.makeWidget(item);
    addTools(item, spec);
    startWidget(spec, item);
    updateEmpty();
    refreshChannels();
    showRangeNote();
    // Stay in edit mode, ready for the next one: keep the kind and channel, clear the rest.
    var keep = { kind: form.elements.kind.value, channel: form.elements.channel.value };
    resetForm();
    form.elements.kind.value = keep.kind;
    form.elements.channel.value = keep.channel;
    showKindHint();
    formDone.textContent = "Added “" + spec.title + "”.";
    item.scrollIntoView({ block: "nearest" });
    form.elements.title.focus();
  }

  function widgetChanged(spec) {
    var index = config.widgets.findIndex(function (w) { return w.id === spec.id; });
    if (index >= 0) config.widgets[index] = spec;
    var item = gridEl.querySelector('[data-widget="' + spec.id + '"]');
    var old = widgetsById[spec.id];
    if (old) { old.destroy(); delete widgetsById[spec.id]; }
    fillWidget(item.querySelector(".widget"), spec);
    addTools(item, spec);
    startWidget(spec, item);
    refreshChannels();
    showRangeNote();
    resetForm();
    formDone.textContent = "Saved “" + spec.title + "”.";
  }

  function removeWidget(id, item, button) {
    button.disabled = true;
    api("DELETE", "/api/dashboards/widgets/" + id + "/").then(function (res) {
      if (!res.ok && res.status !== 404) {
        button.disabled = false;
        button.textContent = "✕";
        layoutStatus.textContent = "Could not remove the widget: " + errorText(res.body, "HTTP " + res.status);
        return;
      }
      var w = widgetsById[id];
      if (w) { w.destroy(); delete widgetsById[id]; }
      config.widgets = config.widgets.filter(function (s) { return s.id !== id; });
      grid.removeWidget(item);
      if (editingId === id) resetForm();
      updateEmpty();
      refreshChannels();
      showRangeNote();
    }).catch(function () {
      button.disabled = false;
      layoutStatus.textContent = "Could not reach the server; the widget was not removed.";
    });
  }

  // Layout: saved 400 ms after the last move or resize, one request at a time.
  function currentLayout() {
    return grid.engine.nodes
      .map(function (n) { return { id: Number(n.id), x: n.x, y: n.y, w: n.w, h: n.h }; })
      .sort(function (a, b) { return a.y - b.y || a.x - b.x; });
  }
  function scheduleSave() {
    if (grid.getColumn() !== 12) return; // a narrow window shows one column: not a layout to keep
    clearTimeout(saveTimer);
    layoutStatus.textContent = "Layout changed…";
    saveTimer = setTimeout(saveLayout, 400);
  }
  function saveLayout(keepalive) {
    clearTimeout(saveTimer);
    saveTimer = null;
    if (saving) { saveAgain = true; return; }
    saving = true;
    layoutStatus.textContent = "Saving layout…";
    api("PATCH", "/api/dashboards/" + config.id + "/", { layout: currentLayout() }, keepalive ? { keepalive: true } : null)
      .then(function (res) {
        layoutStatus.textContent = res.ok ? "Layout saved" : "Could not save the layout: " + errorText(res.body, "HTTP " + res.status);
      })
      .catch(function () { layoutStatus.textContent = "Could not reach the server; the layout is not saved."; })
      .then(function () {
        saving = false;
        if (saveAgain) { saveAgain = false; saveLayout(); }
      });
  }
  function flushLayout() { if (saveTimer) saveLayout(true); }
  grid.on("change", scheduleSave);
  window.addEventListener("pagehide", flushLayout);
  // A chart made wider or narrower gets history at the bucket width that suits its new size.
  grid.on("resizestop", function (event, item) {
    var w = widgetsById[Number(item.dataset.widget)];
    if (!w) return;
    setTimeout(function () {
      if (pickStep(w.view().span, w.body.clientWidth || 600) !== w.step && w.spec.kind !== "table" && w.spec.kind !== "log") {
        w.reset();
        w.loadHistory();
        showRangeNote();
      } else {
        w.draw();
      }
    }, 400); // after the grid's resize animation
  });
})();
