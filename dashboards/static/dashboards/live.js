/* A small client for the real-time envelope protocol on /ws/, as dashboards use it:
 * subscribe to channels, hand every `message` frame to a callback, answer pings,
 * reconnect with back-off and resume each channel from its last offset.
 * (The seam to the platform's browser client, static/js/realtime.js: when that
 * exposes the same subscribe/onMessage shape, this file can delegate to it.) */
(function () {
  "use strict";

  function connect(options) {
    var channels = options.channels || [];
    var onMessage = options.onMessage;
    var onStatus = options.onStatus || function () {};
    var onError = options.onError || function () {};
    var positions = {}; // channel -> {offset, epoch}
    var socket = null;
    var closed = false;
    var retry = 500;
    var nextId = 0;

    function send(type, channel, payload) {
      if (!socket || socket.readyState !== 1) return;
      nextId += 1;
      var header = { type: type, id: "d" + nextId };
      if (channel) header.channel = channel;
      socket.send(JSON.stringify({ header: header, payload: payload === undefined ? null : payload }));
    }

    function open() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      socket = new WebSocket(scheme + location.host + "/ws/");
      onStatus("connecting");
      socket.onopen = function () {
        retry = 500;
        onStatus("live");
        channels.forEach(function (channel) {
          var since = positions[channel];
          send("subscribe", channel, since ? { since: since } : null);
        });
      };
      socket.onmessage = function (event) {
        var frame;
        try { frame = JSON.parse(event.data); } catch (e) { return; }
        var header = frame.header || {};
        if (header.type === "message") {
          if (header.offset) positions[header.channel] = { offset: header.offset, epoch: header.epoch };
          onMessage(header.channel, frame.payload, header.ts || Date.now());
        } else if (header.type === "ping") {
          send("pong");
        } else if (header.type === "error") {
          onError(frame.payload || {});
        }
      };
      socket.onclose = function () {
        socket = null;
        if (closed) return;
        onStatus("reconnecting");
        setTimeout(open, retry);
        retry = Math.min(retry * 2, 10000);
      };
    }

    open();
    return {
      close: function () { closed = true; if (socket) socket.close(); },
    };
  }

  window.DashboardsLive = { connect: connect };
})();
