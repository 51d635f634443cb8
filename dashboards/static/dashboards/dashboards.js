/* One dashboard page: history first (downsampled on the server), then live.
 *
 * Live messages are coalesced: each widget keeps only the latest value per series
 * until the next animation frame draws it, so a burst faster than the screen
 * refreshes costs memory for one value per series, never a growing queue.
 * window.dashboardStats counts what arrived and what was drawn. */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("dashboard-config").textContent);
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var stats = (window.dashboardStats = { received: 0, drawn: 0, coalesced: 0, frames: 0, errors: 0 });
  var COLORS = ["#2456d6", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"];
  var instances = [];
  var widgetsById = (window.dashboardWidgets = {});
  var byChannel = {};
  var frameRequested = false;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }

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

  // --- Widgets ------------------------------------------------------------------------
  function Widget(spec, node) {
    this.spec = spec;
    this.node = node;
    this.body = node.querySelector(".widget-body");
    this.statusEl = node.querySelector(".widget-status");
    this.options = spec.options || {};
    this.windowMs = (this.options.window || 300) * 1000;
    this.pending = {}; // path -> [ts, value], latest only
    this.pendingRows = []; // table/log: at most `rows` messages
    this.maxRows = this.options.rows || 20;
    this.dirty = false;
    this.problem = "";
    this.xs = [];
    this.ys = spec.value_paths.map(function () { return []; });
    this.latest = {};
    this.first = null;
    this.plot = null;
    this.spark = null;
    this.setup();
  }

  Widget.prototype.setStatus = function (text) {
    if (this.problem === text) return;
    this.problem = text;
    if (this.statusEl) this.statusEl.textContent = text;
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
      var sparkBox = el("div");
      sparkBox.style.height = "50px";
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
    if (kind === "table") {
      var table = el("table");
      var head = el("tr");
      head.appendChild(el("th", "", "time"));
      var columns = this.spec.value_paths.length ? this.spec.value_paths : ["payload"];
      columns.forEach(function (p) { head.appendChild(el("th", "", p)); });
      table.appendChild(head);
      this.tbody = el("tbody");
      table.appendChild(this.tbody);
      this.body.appendChild(table);
    }
  };

  Widget.prototype.makePlot = function (box, axes) {
    var self = this;
    var series = [{}].concat(this.spec.value_paths.map(function (path, i) {
      var colors = self.options.colors || [];
      return { label: path, stroke: colors[i] || COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
               value: function (u, v) { return format(v, self.options); } };
    }));
    var opts = {
      width: Math.max(100, box.clientWidth), height: Math.max(40, box.clientHeight - (axes ? 30 : 0)),
      series: series, legend: { show: axes }, cursor: { show: axes },
      axes: axes ? [{}, { size: 50 }] : [{ show: false }, { show: false }],
      scales: { x: { time: true } },
    };
    var plot = new uPlot(opts, [[]].concat(this.spec.value_paths.map(function () { return []; })), box);
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        plot.setSize({ width: Math.max(100, box.clientWidth), height: Math.max(40, box.clientHeight - (axes ? 30 : 0)) });
      }).observe(box);
    }
    return plot;
  };

  // History: one bucket per ~2 px of width, averaged on the server.
  Widget.prototype.loadHistory = function () {
    var self = this;
    if (!this.spec.value_paths.length || this.spec.kind === "table" || this.spec.kind === "log") return;
    var to = Date.now();
    var from = to - this.windowMs;
    var width = Math.max(50, Math.floor((this.body.clientWidth || 600) / 2));
    var step = Math.max(1000, Math.floor(this.windowMs / width));
    fetch("/api/dashboards/widgets/" + this.spec.id + "/series/?from=" + from + "&to=" + to + "&step=" + step, { credentials: "same-origin" })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); })
      .then(function (res) {
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
      .catch(function () { self.setStatus("history could not be loaded"); });
  };

  // Called for every live message: keep the latest value per series, nothing more.
  Widget.prototype.offer = function (payload, ts) {
    var kind = this.spec.kind;
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
      if (!found.ok) { if (!found.missing) problem = found.error; continue; }
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
    if (!newest) return;
    var x = newest / 1000;
    if (this.xs.length && x <= this.xs[this.xs.length - 1]) x = this.xs[this.xs.length - 1] + 0.001;
    this.xs.push(x);
    paths.forEach(function (path, i) {
      var p = self.pending[path];
      self.ys[i].push(p ? p[1] : null);
      if (p) { self.latest[path] = p[1]; stats.drawn++; }
    });
    if (this.first === null && this.ys[0].length) this.first = this.ys[0][0];
    this.pending = {};
    var cutoff = x - this.windowMs / 1000;
    var drop = 0;
    while (drop < this.xs.length && this.xs[drop] < cutoff) drop++;
    if (drop) { this.xs.splice(0, drop); this.ys.forEach(function (col) { col.splice(0, drop); }); }
    this.draw();
  };

  Widget.prototype.draw = function () {
    var kind = this.spec.kind;
    var data = [this.xs].concat(this.ys);
    if (kind === "line" && this.plot) this.plot.setData(data);
    var path = this.spec.value_paths[0];
    var value = this.latest[path];
    if (kind === "stat") {
      if (this.spark) this.spark.setData(data);
      this.valueEl.textContent = format(value, this.options);
      this.valueEl.style.color = value === undefined ? "" : thresholdColor(value, this.options, "");
      if (value !== undefined && this.first !== null && this.first !== undefined) {
        var delta = value - this.first;
        this.deltaEl.textContent = (delta >= 0 ? "▲ " : "▼ ") + format(Math.abs(delta), this.options);
        this.deltaEl.className = "stat-delta " + (delta >= 0 ? "up" : "down");
      }
    }
    if (kind === "gauge" && value !== undefined) {
      var min = typeof this.options.min === "number" ? this.options.min : 0;
      var max = typeof this.options.max === "number" ? this.options.max : 100;
      var frac = Math.max(0, Math.min(1, (value - min) / ((max - min) || 1)));
      var angle = Math.PI * (1 - frac);
      var ex = 50 + 40 * Math.cos(angle), ey = 50 - 40 * Math.sin(angle);
      this.arc.setAttribute("d", "M10 50 A40 40 0 0 1 " + ex.toFixed(2) + " " + ey.toFixed(2));
      this.arc.setAttribute("stroke", thresholdColor(value, this.options, COLORS[0]));
      this.valueEl.textContent = format(value, this.options);
    }
    if (kind === "bar") {
      var self = this;
      var values = this.spec.value_paths.map(function (p) { return self.latest[p]; });
      var top = typeof this.options.max === "number" ? this.options.max : Math.max.apply(null, values.map(function (v) { return Math.abs(v || 0); }).concat([1e-9]));
      this.body.textContent = "";
      this.spec.value_paths.forEach(function (p, i) {
        var row = el("div", "bar-row");
        row.appendChild(el("span", "bar-label", p));
        var bar = el("span", "bar");
        var v = values[i];
        bar.style.width = v === undefined ? "0" : Math.min(100, (Math.abs(v) / top) * 70) + "%";
        bar.style.background = (self.options.colors || [])[i] || (v === undefined ? COLORS[i % COLORS.length] : thresholdColor(v, self.options, COLORS[i % COLORS.length]));
        row.appendChild(bar);
        row.appendChild(el("span", "", format(v, self.options)));
        self.body.appendChild(row);
      });
    }
  };

  Widget.prototype.applyRows = function () {
    var self = this;
    var rows = this.pendingRows;
    this.pendingRows = [];
    rows.forEach(function (item) {
      var time = new Date(item[0]).toLocaleTimeString();
      stats.drawn++;
      if (self.spec.kind === "log") {
        self.body.insertBefore(el("p", "log-line", time + "  " + JSON.stringify(item[1])), self.body.firstChild);
        while (self.body.childNodes.length > self.maxRows) self.body.removeChild(self.body.lastChild);
        return;
      }
      var tr = el("tr");
      tr.appendChild(el("td", "", time));
      if (!self.spec.value_paths.length) tr.appendChild(el("td", "", JSON.stringify(item[1]).slice(0, 120)));
      self.spec.value_paths.forEach(function (p) {
        var found = lookup(item[1], p);
        tr.appendChild(el("td", "", found.ok ? (typeof found.value === "number" ? format(found.value, self.options) : JSON.stringify(found.value)) : "–"));
      });
      self.tbody.insertBefore(tr, self.tbody.firstChild);
      while (self.tbody.childNodes.length > self.maxRows) self.tbody.removeChild(self.tbody.lastChild);
    });
  };

  function onFrame() {
    frameRequested = false;
    stats.frames++;
    instances.forEach(function (w) { if (w.dirty) w.apply(); });
  }

  function onMessage(channel, payload, ts) {
    stats.received++;
    (byChannel[channel] || []).forEach(function (w) { w.offer(payload, ts); });
    if (!frameRequested) {
      frameRequested = true;
      // A hidden tab gets no animation frames; a timer keeps memory bounded there too.
      if (document.hidden) setTimeout(onFrame, 250); else requestAnimationFrame(onFrame);
    }
  }

  // --- Start --------------------------------------------------------------------------
  config.widgets.forEach(function (spec) {
    if (spec.status !== "ok") return;
    var node = document.querySelector('[data-widget="' + spec.id + '"]');
    if (!node) return;
    var w = new Widget(spec, node);
    instances.push(w);
    widgetsById[spec.id] = w;
    (byChannel[spec.channel] = byChannel[spec.channel] || []).push(w);
    w.loadHistory();
  });

  var liveEl = document.querySelector('[data-testid="live-status"]');
  var channels = Object.keys(byChannel);
  if (channels.length) {
    window.DashboardsLive.connect({
      channels: channels,
      onMessage: onMessage,
      onStatus: function (status) {
        liveEl.textContent = status;
        liveEl.classList.toggle("live", status === "live");
      },
      onError: function (error) {
        // A refused subscribe names its channel in the message: show it on those widgets.
        instances.forEach(function (w) {
          if (w.spec.channel === error.channel) w.setStatus(error.message || error.code);
        });
      },
    });
  } else {
    liveEl.textContent = "no live channels";
  }

  // --- Owner editing: add, move, resize, remove; the layout is saved -------------------
  var toggle = document.getElementById("edit-toggle");
  if (!toggle) return;
  var form = document.getElementById("widget-form");
  var grid = document.getElementById("dash-grid");
  var saveTimer = null;

  function api(method, url, body) {
    return fetch(url, {
      method: method, credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  }

  function currentLayout() {
    return Array.prototype.map.call(grid.querySelectorAll("[data-widget]"), function (node) {
      return { id: Number(node.dataset.widget), w: Number(node.dataset.w), h: Number(node.dataset.h) };
    });
  }
  function saveLayout() {
    clearTimeout(saveTimer);
    saveTimer = setTimeout(function () { api("PATCH", "/api/dashboards/" + config.id + "/", { layout: currentLayout() }); }, 300);
  }

  config.widgets.forEach(function (spec) {
    var node = grid.querySelector('[data-widget="' + spec.id + '"]');
    node.dataset.w = spec.w;
    node.dataset.h = spec.h;
    var tools = node.querySelector(".widget-tools");
    tools.hidden = true;
    [["◀", "move left", function () { if (node.previousElementSibling) grid.insertBefore(node, node.previousElementSibling); }],
     ["▶", "move right", function () { if (node.nextElementSibling) grid.insertBefore(node.nextElementSibling, node); }],
     ["−", "narrower", function () { node.dataset.w = Math.max(1, Number(node.dataset.w) - 1); }],
     ["+", "wider", function () { node.dataset.w = Math.min(12, Number(node.dataset.w) + 1); }],
     ["↑", "shorter", function () { node.dataset.h = Math.max(1, Number(node.dataset.h) - 1); }],
     ["↓", "taller", function () { node.dataset.h = Math.min(6, Number(node.dataset.h) + 1); }]].forEach(function (b) {
      var button = el("button", "", b[0]);
      button.type = "button";
      button.title = b[1];
      button.setAttribute("aria-label", b[1]);
      button.onclick = function () {
        b[2]();
        node.style.gridColumn = "span " + node.dataset.w;
        node.style.gridRow = "span " + node.dataset.h;
        saveLayout();
      };
      tools.appendChild(button);
    });
    var remove = el("button", "", "✕");
    remove.type = "button";
    remove.title = "remove";
    remove.setAttribute("aria-label", "remove widget");
    remove.onclick = function () {
      api("DELETE", "/api/dashboards/widgets/" + spec.id + "/").then(function (r) { if (r.ok) node.remove(); });
    };
    tools.appendChild(remove);
  });

  toggle.onclick = function () {
    var editing = form.hidden;
    form.hidden = !editing;
    toggle.textContent = editing ? "Done" : "Edit";
    grid.querySelectorAll(".widget-tools").forEach(function (t) { t.hidden = !editing; });
  };

  form.onsubmit = function (event) {
    event.preventDefault();
    var data = new FormData(form);
    var options = {};
    if (data.get("unit")) options.unit = data.get("unit");
    var body = {
      kind: data.get("kind"), title: data.get("title"), channel: data.get("channel"),
      value_paths: String(data.get("value_paths") || "").split(",").map(function (s) { return s.trim(); }).filter(Boolean),
      options: options,
    };
    api("POST", "/api/dashboards/" + config.id + "/widgets/", body).then(function (r) {
      return r.json().then(function (answer) {
        if (r.ok) { location.reload(); return; }
        var errors = answer.errors || {};
        var text = Object.keys(errors).map(function (k) { return k + ": " + [].concat(errors[k]).join(" "); }).join("; ");
        form.querySelector(".form-errors").textContent = text || answer.detail || "could not add the widget";
      });
    });
  };
})();
