/* Built from clients/js/ by npm run build:client in frontend/: edit clients/js/src, not this file. */
(() => {
  // ../clients/js/src/index.js
  var RealtimeError = class extends Error {
    constructor(code, message, retryAfter) {
      super(code + ": " + message);
      this.name = "RealtimeError";
      this.code = code;
      this.retryAfter = retryAfter;
    }
  };
  var FINAL_CLOSE_CODES = [4002, 4401, 4403, 4413];
  var REFUSALS = ["unauthorized", "forbidden", "not_found", "bad_request", "insufficient_scope"];
  var SSE_RETRYABLE = ["slow_consumer", "going_away", "unavailable", "server_error"];
  var sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  function locationOf() {
    return typeof location !== "undefined" ? location : null;
  }
  var WebconnectRealtime = class _WebconnectRealtime {
    /**
     * @param {string} url the /ws/ URL, absolute or (in a page) relative
     * @param {object} [options] see index.d.ts
     */
    constructor(url, options) {
      this.options = Object.assign(
        {
          backoffBase: 250,
          backoffMax: 3e4,
          requestTimeout: 1e4,
          fallback: true,
          fallbackAfter: 2,
          upgradeInterval: 3e4
        },
        options || {}
      );
      this.url = _WebconnectRealtime.absolute(url || "/ws/");
      this.httpUrl = this.options.httpUrl || this.url.replace(/^ws/, "http").replace(/\/ws\/?(\?.*)?$/, "");
      this.subscriptions = /* @__PURE__ */ new Map();
      this.pending = /* @__PURE__ */ new Map();
      this.nextId = 1;
      this.closedByUser = false;
      this.attempt = 0;
      this.failures = 0;
      this.socket = null;
      this.transport = null;
      this.onclose = null;
      this.onfallback = null;
      this.closeReason = void 0;
      this.retryAfter = 0;
      this._upgradeTimer = null;
    }
    static absolute(url) {
      if (/^wss?:/.test(url)) return url;
      const here = locationOf();
      if (!here) throw new Error("a relative URL needs a page: pass ws://host/ws/");
      return (here.protocol === "https:" ? "wss:" : "ws:") + "//" + here.host + url;
    }
    // --- Connection ---------------------------------------------------------------------------
    async _wsUrl() {
      let url = this.url;
      let ticket = null;
      if (this.options.ticket) ticket = await this.options.ticket();
      else if (this.options.token) ticket = (await this._http("POST", "/api/realtime/tickets/")).ticket;
      if (ticket) url += (url.includes("?") ? "&" : "?") + "ticket=" + encodeURIComponent(ticket);
      return url;
    }
    /** Open the WebSocket (the page's dashboards adapter wraps this to learn when it is live). */
    async open() {
      const WS = this.options.WebSocket || globalThis.WebSocket;
      if (!WS) throw new Error("no WebSocket implementation: pass options.WebSocket");
      const socket = new WS(await this._wsUrl());
      await new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = () => reject(new Error("WebSocket connection failed"));
        socket.onclose = (event) => reject(new Error("WebSocket closed: " + event.code));
      });
      socket.onmessage = (event) => this.handle(event.data);
      socket.onerror = () => {
      };
      socket.onclose = (event) => this.dropped(event);
      this._stopSse();
      this.socket = socket;
      this.transport = "websocket";
      this.attempt = 0;
      this.failures = 0;
    }
    async connect() {
      this.closedByUser = false;
      try {
        await this.open();
      } catch (error) {
        this.failures += 1;
        if (!this.options.fallback) throw error;
        await this._openSse();
      }
      return this;
    }
    close() {
      this.closedByUser = true;
      clearTimeout(this._upgradeTimer);
      this._stopSse();
      if (this.socket) this.socket.close(1e3);
    }
    dropped(event) {
      this.socket = null;
      for (const [, waiter] of this.pending) waiter.reject(new Error("connection closed (" + event.code + ")"));
      this.pending.clear();
      if (this.onclose) this.onclose(event, this.closeReason);
      if (this.closedByUser || FINAL_CLOSE_CODES.includes(event.code)) return;
      this.reconnect();
    }
    async reconnect() {
      for (; ; ) {
        this.attempt += 1;
        const ceiling = Math.min(this.options.backoffMax, this.options.backoffBase * 2 ** (this.attempt - 1));
        await sleep(Math.max(Math.random() * ceiling, this.retryAfter * 1e3));
        this.retryAfter = 0;
        if (this.closedByUser) return;
        try {
          await this.open();
          break;
        } catch (error) {
          this.failures += 1;
          if (this.options.fallback && this.failures >= this.options.fallbackAfter) {
            try {
              await this._openSse();
              return;
            } catch (e) {
            }
          }
        }
      }
      this._resubscribeAll();
    }
    _resubscribeAll() {
      for (const sub of this.subscriptions.values()) {
        const since = sub.epoch ? { offset: sub.offset, epoch: sub.epoch } : null;
        this.subscribeFrame(sub, since).catch((error) => {
          if (error instanceof RealtimeError && error.code !== "rate_limited" && error.code !== "unavailable") {
            this.subscriptions.delete(sub.channel);
            if (sub.onEnd) sub.onEnd(error);
          }
        });
      }
    }
    // --- WebSocket frames ------------------------------------------------------------------------
    send(frame) {
      const raw = JSON.stringify(frame);
      if (this.options.trace) this.options.trace(">", raw);
      this.socket.send(raw);
    }
    call(header, payload, timeout) {
      if (!this.socket) return Promise.reject(new RealtimeError("unavailable", "not connected"));
      const id = "j" + this.nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error("timeout"));
        }, timeout || this.options.requestTimeout);
        this.pending.set(id, {
          resolve: (frame) => {
            clearTimeout(timer);
            resolve(frame);
          },
          reject: (error) => {
            clearTimeout(timer);
            reject(error);
          }
        });
        this.send({ header: Object.assign({}, header, { id }), payload: payload === void 0 ? null : payload });
      });
    }
    handle(raw) {
      if (this.options.trace) this.options.trace("<", raw);
      for (const line of String(raw).split("\n")) this._handleFrame(JSON.parse(line));
    }
    _handleFrame(frame) {
      const header = frame.header || {};
      switch (header.type) {
        case "message":
          this._deliver(header, frame.payload);
          return;
        case "subscribed":
          this._gap(header.channel, frame.payload || {});
          return;
        case "ping":
          this.send({ header: { type: "pong" }, payload: null });
          return;
        case "close":
          this.closeReason = frame.payload && frame.payload.reason;
          return;
        case "join":
        case "leave":
          if (this.options.onEvent) this.options.onEvent(frame);
          return;
        default: {
          const waiter = this.pending.get(String(header.id));
          if (header.type === "error") {
            const p = frame.payload || {};
            const error = new RealtimeError(p.code, p.message, p.retry_after);
            if (p.code === "rate_limited" && p.retry_after) this.retryAfter = p.retry_after;
            if (!waiter) {
              const sub = header.channel && this.subscriptions.get(header.channel);
              if (sub) {
                this.subscriptions.delete(header.channel);
                if (sub.onEnd) sub.onEnd(error);
              }
              return;
            }
            this.pending.delete(String(header.id));
            waiter.reject(error);
            return;
          }
          if (!waiter) return;
          this.pending.delete(String(header.id));
          waiter.resolve(frame);
        }
      }
    }
    _deliver(header, payload) {
      const sub = this.subscriptions.get(header.channel);
      if (!sub) return;
      if (header.epoch === sub.epoch && header.offset <= sub.offset) return;
      sub.offset = header.offset;
      sub.epoch = header.epoch;
      sub.callback({
        channel: header.channel,
        offset: header.offset,
        epoch: header.epoch,
        from: header.from,
        ts: header.ts,
        encoding: header.encoding || "json",
        payload
      });
    }
    _gap(channel, position) {
      const sub = this.subscriptions.get(channel);
      if (!sub) return;
      sub.recovered = false;
      sub.offset = position.offset;
      sub.epoch = position.epoch;
      if (this.options.onGap) this.options.onGap(sub);
    }
    _position(sub, result) {
      sub.recovered = result.recovered;
      if (result.recovered === false && this.options.onGap) this.options.onGap(sub);
      if (result.epoch !== sub.epoch) {
        sub.epoch = result.epoch;
        sub.offset = result.offset;
      } else if (result.recovered !== true) {
        sub.offset = Math.max(sub.offset, result.offset);
      }
    }
    async subscribeFrame(sub, since) {
      if (this.transport === "sse") return this._sseSubscribe(sub, since);
      const ack = await this.call({ type: "subscribe", channel: sub.channel }, since ? { since } : null);
      this._position(sub, ack.payload || {});
      return sub;
    }
    // --- API ---------------------------------------------------------------------------------------
    async subscribe(channel, callback, options) {
      const sub = {
        channel,
        callback: callback || (() => {
        }),
        offset: 0,
        epoch: "",
        recovered: void 0,
        onEnd: options && options.onEnd
      };
      const since = options && options.since || null;
      if (since) {
        sub.offset = since.offset;
        sub.epoch = since.epoch;
      }
      this.subscriptions.set(channel, sub);
      try {
        return await this.subscribeFrame(sub, since);
      } catch (e) {
        this.subscriptions.delete(channel);
        throw e;
      }
    }
    async unsubscribe(channel) {
      const sub = this.subscriptions.get(channel);
      this.subscriptions.delete(channel);
      if (this.transport === "sse") {
        if (sub && sub.abort) sub.abort.abort();
        return;
      }
      await this.call({ type: "unsubscribe", channel });
    }
    async publish(channel, payload, options) {
      if (this.transport === "sse") {
        if (options && options.encoding) throw new RealtimeError("bad_request", "base64 publishes need the WebSocket");
        return this._http("POST", "/api/channels/" + channel + "/publish/", payload);
      }
      const header = { type: "publish", channel };
      if (options && options.encoding) header.encoding = options.encoding;
      return (await this.call(header, payload)).payload;
    }
    async request(method, payload, options) {
      if (this.transport === "sse") throw new RealtimeError("unavailable", "requests need the WebSocket");
      return (await this.call({ type: "request", method }, payload, options && options.timeout)).payload;
    }
    async presence(channel) {
      if (this.transport === "sse") return (await this._http("GET", "/api/channels/" + channel + "/presence/")).clients;
      return (await this.call({ type: "presence", channel })).payload.clients;
    }
    async history(channel, limit) {
      if (this.transport === "sse") {
        return this._http("GET", "/api/channels/" + channel + "/history/?limit=" + (limit || 50));
      }
      return (await this.call({ type: "history", channel }, { limit: limit || 50 })).payload;
    }
    // --- HTTP: REST and the SSE fallback -------------------------------------------------------
    _headers(extra) {
      const headers = Object.assign({ Accept: "application/json" }, extra || {});
      if (this.options.token) headers.Authorization = "Bearer " + this.options.token;
      if (this.options.csrfToken) headers["X-CSRFToken"] = this.options.csrfToken;
      return headers;
    }
    async _http(method, path, body) {
      const response = await fetch(this.httpUrl + path, {
        method,
        credentials: "same-origin",
        headers: this._headers(body === void 0 ? {} : { "Content-Type": "application/json" }),
        body: body === void 0 ? void 0 : JSON.stringify(body)
      });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) {
        const error = new RealtimeError(data.code || "http_" + response.status, data.detail || response.statusText);
        error.status = response.status;
        throw error;
      }
      return data;
    }
    async _openSse() {
      await fetch(this.httpUrl + "/api/me/", { credentials: "same-origin", headers: this._headers() });
      this.transport = "sse";
      this.attempt = 0;
      this._resubscribeAll();
      if (this.onfallback) this.onfallback();
      clearTimeout(this._upgradeTimer);
      this._upgradeTimer = setTimeout(() => this._tryUpgrade(), this.options.upgradeInterval);
    }
    async _tryUpgrade() {
      if (this.closedByUser || this.transport !== "sse") return;
      try {
        await this.open();
        this._resubscribeAll();
      } catch (e) {
        this._upgradeTimer = setTimeout(() => this._tryUpgrade(), this.options.upgradeInterval);
      }
    }
    _stopSse() {
      clearTimeout(this._upgradeTimer);
      for (const sub of this.subscriptions.values()) {
        if (sub.abort) sub.abort.abort();
        sub.abort = null;
      }
    }
    /** One channel's stream; resolves once the server answered `subscribed`, then keeps reading. */
    _sseSubscribe(sub, since) {
      if (sub.abort) sub.abort.abort();
      const abort = sub.abort = new AbortController();
      const query = since ? "?since=" + encodeURIComponent(since.epoch + ":" + since.offset) : "";
      return new Promise((resolve, reject) => {
        let answered = false;
        const onFrame = (kind, frame) => {
          if (kind === "subscribed" && !answered) {
            answered = true;
            this._position(sub, frame.payload || {});
            resolve(sub);
          } else if (kind === "subscribed") this._gap(sub.channel, frame.payload || {});
          else if (kind === "message") this._deliver(frame.header || {}, frame.payload);
          else if ((kind === "join" || kind === "leave") && this.options.onEvent) this.options.onEvent(frame);
        };
        const run = async () => {
          const response = await fetch(this.httpUrl + "/api/channels/" + sub.channel + "/events/" + query, {
            credentials: "same-origin",
            headers: this._headers({ Accept: "text/event-stream" }),
            signal: abort.signal
          });
          if (!response.ok) {
            const data = await response.json().catch(() => ({}));
            throw new RealtimeError(data.code || "http_" + response.status, data.detail || response.statusText);
          }
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          let buffer = "";
          let fields = {};
          for (; ; ) {
            const { value, done } = await reader.read();
            if (done) return;
            buffer += decoder.decode(value, { stream: true });
            let newline;
            while ((newline = buffer.indexOf("\n")) >= 0) {
              const line = buffer.slice(0, newline).replace(/\r$/, "");
              buffer = buffer.slice(newline + 1);
              if (line === "") {
                if (fields.event === "error") {
                  const p = JSON.parse(fields.data || "{}");
                  if (!SSE_RETRYABLE.includes(p.code)) throw Object.assign(new RealtimeError(p.code, p.message), { final: true });
                  return;
                }
                if (fields.data) onFrame(fields.event || "message", JSON.parse(fields.data));
                fields = {};
              } else if (!line.startsWith(":")) {
                const colon = line.indexOf(":");
                const name = colon < 0 ? line : line.slice(0, colon);
                fields[name] = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
              }
            }
          }
        };
        run().then(
          () => this._sseEnded(sub, abort, answered ? null : reject),
          (error) => {
            if (abort.signal.aborted) return;
            if (!answered) return reject(error);
            if (error.final || error instanceof RealtimeError && REFUSALS.includes(error.code)) {
              this.subscriptions.delete(sub.channel);
              if (sub.onEnd) sub.onEnd(error);
              return;
            }
            this._sseEnded(sub, abort, null);
          }
        );
      });
    }
    /** A stream ended (the server restarted, a proxy cut it): reopen it from the last offset, with backoff. */
    async _sseEnded(sub, abort, reject) {
      if (abort.signal.aborted || this.closedByUser || this.subscriptions.get(sub.channel) !== sub) return;
      if (reject) return reject(new RealtimeError("unavailable", "the event stream ended before it started"));
      for (let attempt = 1; ; attempt += 1) {
        const ceiling = Math.min(this.options.backoffMax, this.options.backoffBase * 2 ** (attempt - 1));
        await sleep(Math.random() * ceiling);
        if (this.closedByUser || this.transport !== "sse" || this.subscriptions.get(sub.channel) !== sub) return;
        try {
          await this._sseSubscribe(sub, sub.epoch ? { offset: sub.offset, epoch: sub.epoch } : null);
          return;
        } catch (error) {
          if (error instanceof RealtimeError && REFUSALS.includes(error.code)) {
            this.subscriptions.delete(sub.channel);
            if (sub.onEnd) sub.onEnd(error);
            return;
          }
        }
      }
    }
  };

  // ../clients/js/src/browser.js
  WebconnectRealtime.RealtimeError = RealtimeError;
  globalThis.WebconnectRealtime = WebconnectRealtime;
})();
