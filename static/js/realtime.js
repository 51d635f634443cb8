/*
 * webconnect real-time client for pages (no framework, no build step).
 *
 *   const rt = new WebconnectRealtime("/ws/");          // same-origin: the session cookie authenticates
 *   await rt.connect();
 *   const sub = await rt.subscribe("chat.lobby", (msg) => console.log(msg.payload));
 *   await rt.publish("chat.lobby", {text: "hi"});
 *   await rt.request("echo", {x: 1}, {timeout: 5000});
 *   await rt.presence("chat.lobby"); await rt.history("chat.lobby", 20);
 *
 * Options: {ticket: async () => "..."} to connect with a one-time ticket instead (cross-origin pages),
 * {onGap(sub)} called when recovery after a reconnect could not fill a gap (reload state then),
 * {onEvent(frame)} for join/leave, {trace(direction, raw)} to log every frame.
 * Reconnects with exponential backoff and full jitter, resubscribes and recovers from the last offset seen.
 * See docs/protocol.md.
 */
(function (global) {
  "use strict";

  class RealtimeError extends Error {
    constructor(code, message, retryAfter) {
      super(code + ": " + message);
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  class WebconnectRealtime {
    constructor(url, options) {
      this.options = options || {};
      this.url = WebconnectRealtime.absolute(url || "/ws/");
      this.subscriptions = new Map();
      this.pending = new Map();
      this.nextId = 1;
      this.closedByUser = false;
      this.attempt = 0;
      this.socket = null;
      this.onclose = null;
    }

    static absolute(url) {
      if (/^wss?:/.test(url)) return url;
      const scheme = global.location.protocol === "https:" ? "wss:" : "ws:";
      return scheme + "//" + global.location.host + url;
    }

    async open() {
      let url = this.url;
      if (this.options.ticket) {
        const ticket = await this.options.ticket();
        url += (url.includes("?") ? "&" : "?") + "ticket=" + encodeURIComponent(ticket);
      }
      const socket = new WebSocket(url);
      await new Promise((resolve, reject) => {
        socket.onopen = resolve;
        socket.onerror = () => reject(new Error("WebSocket connection failed"));
        socket.onclose = (event) => reject(new Error("WebSocket closed: " + event.code));
      });
      socket.onmessage = (event) => this.handle(event.data);
      socket.onclose = (event) => this.dropped(event);
      this.socket = socket;
      this.attempt = 0;
    }

    async connect() {
      this.closedByUser = false;
      await this.open();
      return this;
    }

    close() {
      this.closedByUser = true;
      if (this.socket) this.socket.close(1000);
    }

    dropped(event) {
      for (const [, waiter] of this.pending) waiter.reject(new Error("connection closed (" + event.code + ")"));
      this.pending.clear();
      if (this.onclose) this.onclose(event, this.closeReason);
      // 4002 credential ended, 4401/4403 refused, 4413 frame too large: reconnecting would not help.
      if (this.closedByUser || [4002, 4401, 4403, 4413].includes(event.code)) return;
      this.reconnect();
    }

    async reconnect() {
      for (;;) {
        this.attempt += 1;
        const ceiling = Math.min(30000, 250 * 2 ** (this.attempt - 1));
        await new Promise((r) => setTimeout(r, Math.random() * ceiling));
        if (this.closedByUser) return;
        try {
          await this.open();
          break;
        } catch (e) {
          /* try again */
        }
      }
      for (const sub of this.subscriptions.values()) {
        const since = sub.epoch ? { offset: sub.offset, epoch: sub.epoch } : null;
        this.subscribeFrame(sub, since).catch(() => {});
      }
    }

    send(frame) {
      const raw = JSON.stringify(frame);
      if (this.options.trace) this.options.trace(">", raw);
      this.socket.send(raw);
    }

    call(header, payload, timeout) {
      const id = "b" + this.nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error("timeout"));
        }, timeout || 10000);
        this.pending.set(id, {
          resolve: (frame) => { clearTimeout(timer); resolve(frame); },
          reject: (error) => { clearTimeout(timer); reject(error); },
        });
        this.send({ header: Object.assign({}, header, { id: id }), payload: payload === undefined ? null : payload });
      });
    }

    handle(raw) {
      if (this.options.trace) this.options.trace("<", raw);
      const frame = JSON.parse(raw);
      const header = frame.header || {};
      switch (header.type) {
        case "message": {
          const sub = this.subscriptions.get(header.channel);
          if (!sub) return;
          if (header.epoch === sub.epoch && header.offset <= sub.offset) return; // seen already
          sub.offset = header.offset;
          sub.epoch = header.epoch;
          sub.callback({
            channel: header.channel, offset: header.offset, epoch: header.epoch,
            from: header.from, ts: header.ts, encoding: header.encoding || "json", payload: frame.payload,
          });
          return;
        }
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
          if (!waiter) return;
          this.pending.delete(String(header.id));
          if (header.type === "error") {
            const p = frame.payload || {};
            waiter.reject(new RealtimeError(p.code, p.message, p.retry_after));
          } else {
            waiter.resolve(frame);
          }
        }
      }
    }

    async subscribeFrame(sub, since) {
      const ack = await this.call({ type: "subscribe", channel: sub.channel }, since ? { since: since } : null);
      const result = ack.payload || {};
      sub.recovered = result.recovered;
      if (result.recovered === false && this.options.onGap) this.options.onGap(sub);
      if (result.epoch !== sub.epoch) {
        sub.epoch = result.epoch;
        sub.offset = result.offset;
      } else if (result.recovered !== true) {
        sub.offset = Math.max(sub.offset, result.offset);
      }
      return sub;
    }

    async subscribe(channel, callback, options) {
      const sub = { channel: channel, callback: callback || (() => {}), offset: 0, epoch: "", recovered: undefined };
      this.subscriptions.set(channel, sub);
      const since = options && options.since;
      try {
        return await this.subscribeFrame(sub, since || null);
      } catch (e) {
        this.subscriptions.delete(channel);
        throw e;
      }
    }

    async unsubscribe(channel) {
      this.subscriptions.delete(channel);
      await this.call({ type: "unsubscribe", channel: channel });
    }

    async publish(channel, payload, options) {
      const header = { type: "publish", channel: channel };
      if (options && options.encoding) header.encoding = options.encoding; // "base64": payload = {data: "..."}
      return (await this.call(header, payload)).payload;
    }

    async request(method, payload, options) {
      return (await this.call({ type: "request", method: method }, payload, options && options.timeout)).payload;
    }

    async presence(channel) {
      return (await this.call({ type: "presence", channel: channel })).payload.clients;
    }

    async history(channel, limit) {
      return (await this.call({ type: "history", channel: channel }, { limit: limit || 50 })).payload;
    }
  }

  WebconnectRealtime.RealtimeError = RealtimeError;
  global.WebconnectRealtime = WebconnectRealtime;
})(window);
