/* Dashboards' adapter over the platform's browser client (static/js/realtime.js):
 * one connection per page, one subscription per channel the widgets read, every
 * message handed to a callback; the client answers pings, reconnects and resumes
 * each channel from its last offset. */
(function () {
  "use strict";

  function connect(options) {
    var onStatus = options.onStatus || function () {};
    var onError = options.onError || function () {};
    var rt = new window.WebconnectRealtime("/ws/");
    // The client reconnects by itself; wrapping open() tells the page when it is live again.
    var open = rt.open.bind(rt);
    rt.open = function () {
      return open().then(function () { onStatus("live"); });
    };
    rt.onclose = function (event) {
      onStatus(event.code === 4002 || event.code === 4401 ? "disconnected" : "reconnecting");
    };
    onStatus("connecting");
    rt.connect()
      .then(function () {
        options.channels.forEach(function (channel) {
          rt.subscribe(channel, function (message) {
            options.onMessage(message.channel, message.payload, message.ts || Date.now());
          }).catch(function (error) {
            onError({ code: error.code, message: error.message, channel: channel });
          });
        });
      })
      .catch(function () { onStatus("reconnecting"); rt.reconnect(); });
    return rt;
  }

  window.DashboardsLive = { connect: connect };
})();
