/* Dashboards' adapter over the platform's browser client (static/js/realtime.js):
 * one connection per page, opened when the first channel is wanted, one subscription
 * per channel the widgets read, every message handed to a callback. The set of
 * channels changes as widgets are added or removed and as the time range goes live
 * or not: setChannels() subscribes what is new and unsubscribes what is gone. The
 * client answers pings, reconnects and resumes each channel from its last offset. */
(function () {
  "use strict";

  function Live(options) {
    this.onMessage = options.onMessage;
    this.onStatus = options.onStatus || function () {};
    this.onError = options.onError || function () {};
    this.rt = null;
    this.open = false;
    this.wanted = new Set();
    this.subscribed = new Set();
  }

  Live.prototype.setChannels = function (channels) {
    this.wanted = new Set(channels);
    if (!this.rt) {
      if (this.wanted.size) this.start();
      return;
    }
    if (this.open) this.sync();
  };

  Live.prototype.start = function () {
    var self = this;
    var rt = (this.rt = new window.WebconnectRealtime("/ws/"));
    // The client reconnects by itself (and resubscribes what it had); wrapping open()
    // tells the page when it is live again and subscribes channels wanted meanwhile.
    var open = rt.open.bind(rt);
    rt.open = function () {
      return open().then(function () {
        self.open = true;
        self.onStatus("live");
        self.sync();
      });
    };
    // No WebSocket got through (a proxy refusing upgrades): the client streams over SSE instead.
    rt.onfallback = function () {
      self.open = true;
      self.onStatus("live");
      self.sync();
    };
    rt.onclose = function (event) {
      self.open = false;
      self.onStatus(event.code === 4002 || event.code === 4401 ? "disconnected" : "reconnecting");
    };
    this.onStatus("connecting");
    rt.connect().catch(function () {
      self.onStatus("reconnecting");
      rt.reconnect();
    });
  };

  Live.prototype.sync = function () {
    var self = this;
    var rt = this.rt;
    this.wanted.forEach(function (channel) {
      if (self.subscribed.has(channel)) return;
      self.subscribed.add(channel);
      rt.subscribe(channel, function (message) {
        if (self.wanted.has(message.channel)) {
          self.onMessage(message.channel, message.payload, message.ts || Date.now());
        }
      }).catch(function (error) {
        self.subscribed.delete(channel);
        self.onError({ code: error.code, message: error.message, channel: channel });
      });
    });
    this.subscribed.forEach(function (channel) {
      if (self.wanted.has(channel)) return;
      self.subscribed.delete(channel);
      rt.unsubscribe(channel).catch(function () { /* gone with the connection: nothing to undo */ });
    });
  };

  window.DashboardsLive = {
    connect: function (options) { return new Live(options); },
  };
})();
