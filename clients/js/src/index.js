/*
 * webconnect real-time client: an ES module with no dependencies, for browsers and Node 18+.
 *
 *   import { WebconnectRealtime } from "webconnect-realtime";
 *   const rt = new WebconnectRealtime("/ws/");          // same-origin page: the session cookie authenticates
 *   await rt.connect();
 *   await rt.subscribe("chat.lobby", (msg) => console.log(msg.payload));
 *   await rt.publish("chat.lobby", { text: "hi" });
 *   await rt.request("echo", { x: 1 }, { timeout: 5000 });
 *   await rt.presence("chat.lobby"); await rt.history("chat.lobby", 20);
 *
 * Reconnects with exponential backoff and full jitter, resubscribes with `since` (the last offset
 * seen), drops duplicates at the seam and calls `onGap(sub)` when the server says the gap could not
 * be filled (`recovered: false`). When the WebSocket cannot be opened (a proxy that does not pass
 * upgrades) it falls back to Server-Sent Events for subscriptions and REST for the rest, and tries
 * the WebSocket again every `upgradeInterval` ms. See docs/protocol.md and clients/js/README.md.
 */

export class RealtimeError extends Error {
  constructor(code, message, retryAfter) {
    super(code + ": " + message);
    this.name = "RealtimeError";
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

// Close codes after which reconnecting as is cannot help: the credential ended (4002), the
// connection was refused (4401, 4403), a frame was too large (4413). See docs/protocol.md.
const FINAL_CLOSE_CODES = [4002, 4401, 4403, 4413];

// Error codes that end a subscription instead of being retried.
const REFUSALS = ["unauthorized", "forbidden", "not_found", "bad_request", "insufficient_scope"];
const SSE_RETRYABLE = ["slow_consumer", "going_away", "unavailable", "server_error"];

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function locationOf() {
  return typeof location !== "undefined" ? location : null; // eslint-disable-line no-undef
}

export class WebconnectRealtime {
  /**
   * @param {string} url the /ws/ URL, absolute or (in a page) relative
   * @param {object} [options] see index.d.ts
   */
  constructor(url, options) {
    this.options = Object.assign(
      {
        backoffBase: 250,
        backoffMax: 30000,
        requestTimeout: 10000,
        fallback: true,
        fallbackAfter: 2,
        upgradeInterval: 30000,
      },
      options || {},
    );
    this.url = WebconnectRealtime.absolute(url || "/ws/");
    this.httpUrl = this.options.httpUrl || this.url.replace(/^ws/, "http").replace(/\/ws\/?(\?.*)?$/, "");
    this.subscriptions = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.closedByUser = false;
    this.attempt = 0;
    this.failures = 0; // WebSocket opens that failed in a row
    this.socket = null;
    this.transport = null; // "websocket" | "sse" once connected
    this.onclose = null;
    this.onfallback = null;
    this.closeReason = undefined;
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
    socket.onerror = () => {};
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
      await this._openSse(); // throws too when the server cannot be reached at all
    }
    return this;
  }

  close() {
    this.closedByUser = true;
    clearTimeout(this._upgradeTimer);
    this._stopSse();
    if (this.socket) this.socket.close(1000);
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
    for (;;) {
      this.attempt += 1;
      const ceiling = Math.min(this.options.backoffMax, this.options.backoffBase * 2 ** (this.attempt - 1));
      // Full jitter spreads a reconnect storm; a connection limit says when to come back.
      await sleep(Math.max(Math.random() * ceiling, this.retryAfter * 1000));
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
            /* neither transport: keep trying */
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
          this.subscriptions.delete(sub.channel); // refused now (a policy changed meanwhile)
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
        },
      });
      this.send({ header: Object.assign({}, header, { id: id }), payload: payload === undefined ? null : payload });
    });
  }

  handle(raw) {
    if (this.options.trace) this.options.trace("<", raw);
    // A batching server may put several envelopes in one frame, one per line.
    for (const line of String(raw).split("\n")) this._handleFrame(JSON.parse(line));
  }

  _handleFrame(frame) {
    const header = frame.header || {};
    switch (header.type) {
      case "message":
        this._deliver(header, frame.payload);
        return;
      case "subscribed": // a gap after a server-side outage could not be filled
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
              this.subscriptions.delete(header.channel); // the server ended it (a policy change)
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
    if (header.epoch === sub.epoch && header.offset <= sub.offset) return; // seen already
    sub.offset = header.offset;
    sub.epoch = header.epoch;
    sub.callback({
      channel: header.channel,
      offset: header.offset,
      epoch: header.epoch,
      from: header.from,
      ts: header.ts,
      encoding: header.encoding || "json",
      payload: payload,
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
    const ack = await this.call({ type: "subscribe", channel: sub.channel }, since ? { since: since } : null);
    this._position(sub, ack.payload || {});
    return sub;
  }

  // --- API ---------------------------------------------------------------------------------------

  async subscribe(channel, callback, options) {
    const sub = {
      channel: channel,
      callback: callback || (() => {}),
      offset: 0,
      epoch: "",
      recovered: undefined,
      onEnd: options && options.onEnd,
    };
    const since = (options && options.since) || null;
    if (since) {
      // Start from there, so the recovered messages that follow the answer are not taken for duplicates.
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
    await this.call({ type: "unsubscribe", channel: channel });
  }

  async publish(channel, payload, options) {
    if (this.transport === "sse") {
      if (options && options.encoding) throw new RealtimeError("bad_request", "base64 publishes need the WebSocket");
      return this._http("POST", "/api/channels/" + channel + "/publish/", payload);
    }
    const header = { type: "publish", channel: channel };
    if (options && options.encoding) header.encoding = options.encoding; // "base64": payload = {data: "..."}
    return (await this.call(header, payload)).payload;
  }

  async request(method, payload, options) {
    if (this.transport === "sse") throw new RealtimeError("unavailable", "requests need the WebSocket");
    return (await this.call({ type: "request", method: method }, payload, options && options.timeout)).payload;
  }

  async presence(channel) {
    if (this.transport === "sse") return (await this._http("GET", "/api/channels/" + channel + "/presence/")).clients;
    return (await this.call({ type: "presence", channel: channel })).payload.clients;
  }

  async history(channel, limit) {
    if (this.transport === "sse") {
      return this._http("GET", "/api/channels/" + channel + "/history/?limit=" + (limit || 50));
    }
    return (await this.call({ type: "history", channel: channel }, { limit: limit || 50 })).payload;
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
      method: method,
      credentials: "same-origin",
      headers: this._headers(body === undefined ? {} : { "Content-Type": "application/json" }),
      body: body === undefined ? undefined : JSON.stringify(body),
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
    // Nothing to open: each subscription is its own stream. Only check that the server answers HTTP.
    await fetch(this.httpUrl + "/api/me/", { credentials: "same-origin", headers: this._headers() });
    this.transport = "sse";
    this.attempt = 0;
    this._resubscribeAll();
    if (this.onfallback) this.onfallback(); // the page is live again, over SSE (open() is not called)
    clearTimeout(this._upgradeTimer);
    this._upgradeTimer = setTimeout(() => this._tryUpgrade(), this.options.upgradeInterval);
  }

  async _tryUpgrade() {
    if (this.closedByUser || this.transport !== "sse") return;
    try {
      await this.open(); // stops the streams, then every subscription resumes on the socket with `since`
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
    const abort = (sub.abort = new AbortController());
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
          signal: abort.signal,
        });
        if (!response.ok) {
          const data = await response.json().catch(() => ({}));
          throw new RealtimeError(data.code || "http_" + response.status, data.detail || response.statusText);
        }
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        let fields = {};
        for (;;) {
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
                // Behind, or the server is restarting: reopen from the last offset. Anything else
                // (revoked, forbidden) ends the subscription.
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
          if (error.final || (error instanceof RealtimeError && REFUSALS.includes(error.code))) {
            this.subscriptions.delete(sub.channel);
            if (sub.onEnd) sub.onEnd(error);
            return;
          }
          this._sseEnded(sub, abort, null);
        },
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
          this.subscriptions.delete(sub.channel); // refused now: retrying cannot help
          if (sub.onEnd) sub.onEnd(error);
          return;
        }
      }
    }
  }
}

export default WebconnectRealtime;
