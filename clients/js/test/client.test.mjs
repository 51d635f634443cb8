// The JavaScript client against a live server. Run by tests/clients/test_js_client.py, which starts
// the server(s) and sets:
//   WEBCONNECT_WS      ws://host:port of the server (A)
//   WEBCONNECT_TOKEN   a bearer token with realtime:read realtime:write
//   WEBCONNECT_HTTP_B  (restart test) http://host:port of a second server process on the same Redis
//   WEBCONNECT_CONTROL (restart test) http://host:port of the pytest process: POST /stop, /start restart A
// Without the restart variables that test is skipped here; the pytest test that needs it requires them.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RealtimeError, WebconnectRealtime } from "../src/index.js";

const WS = process.env.WEBCONNECT_WS;
const TOKEN = process.env.WEBCONNECT_TOKEN;
const HTTP_B = process.env.WEBCONNECT_HTTP_B;
const CONTROL = process.env.WEBCONNECT_CONTROL;
const RUN = Date.now().toString(36);
// Node 20 needs --experimental-websocket for a global WebSocket; older ones get `ws` passed in.
const WebSocketImpl = globalThis.WebSocket || (await import(process.env.WEBCONNECT_WS_MODULE || "ws")).WebSocket;

function client(options = {}) {
  return new WebconnectRealtime(WS + "/ws/", {
    token: TOKEN,
    WebSocket: WebSocketImpl,
    backoffBase: 100,
    backoffMax: 1000,
    ...options,
  });
}

async function until(predicate, what, ms = 15000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("timed out waiting for " + what);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function restPublish(base, channel, payload) {
  const response = await fetch(base + "/api/channels/" + channel + "/publish/", {
    method: "POST",
    headers: { Authorization: "Bearer " + TOKEN, "Content-Type": "application/json" },
    body: JSON.stringify(payload),
  });
  assert.equal(response.status, 201, await response.clone().text());
  return response.json();
}

test("connect, subscribe, publish, request, presence and history over the WebSocket", async () => {
  const channel = "chat.js-" + RUN;
  const rt = await client().connect();
  try {
    assert.equal(rt.transport, "websocket");
    const received = [];
    const sub = await rt.subscribe(channel, (message) => received.push(message));
    assert.equal(sub.offset, 0);
    const position = await rt.publish(channel, { n: 1 });
    assert.equal(position.offset, 1);
    await until(() => received.length === 1, "the message");
    assert.deepEqual(received[0].payload, { n: 1 });
    assert.equal(received[0].from.name, "alice");
    assert.deepEqual(await rt.request("echo", { x: 1 }), { x: 1 });
    const clients = await rt.presence(channel);
    assert.equal(clients[0].name, "alice");
    const history = await rt.history(channel, 10);
    assert.equal(history.messages.length, 1);
    await assert.rejects(rt.subscribe("nope.x"), (error) => error instanceof RealtimeError && error.code === "not_found");
  } finally {
    rt.close();
  }
});

test("falls back to Server-Sent Events when the WebSocket cannot be opened, and recovers with since", async () => {
  const channel = "chat.jssse-" + RUN;
  const http = WS.replace(/^ws/, "http");
  // An address that refuses the upgrade (no such WebSocket route), as a proxy that does not pass them would.
  const rt = await client({ httpUrl: http, upgradeInterval: 600000 });
  rt.url = WS + "/no-websocket-here/";
  await rt.connect();
  try {
    assert.equal(rt.transport, "sse");
    await restPublish(http, channel, { n: 1 });
    const received = [];
    const sub = await rt.subscribe(channel, (message) => received.push(message), {
      since: { offset: 0, epoch: (await rt.history(channel, 1)).epoch },
    });
    assert.equal(sub.recovered, true);
    await rt.publish(channel, { n: 2 }); // REST in SSE mode
    await until(() => received.length === 2, "a recovered and a live message over SSE");
    assert.deepEqual(
      received.map((m) => [m.offset, m.payload.n]),
      [
        [1, 1],
        [2, 2],
      ],
    );
    assert.equal((await rt.presence(channel)).length, 0); // REST presence: SSE readers are not present
    await assert.rejects(rt.request("echo", {}), (error) => error.code === "unavailable");
  } finally {
    rt.close();
  }
});

test("reconnects across a server restart with no gap and no duplicate", { skip: !CONTROL && "no restart control" }, async () => {
  const channel = "chat.jsrestart-" + RUN;
  const rt = await client().connect();
  const received = [];
  let gaps = 0;
  rt.options.onGap = () => (gaps += 1);
  try {
    await rt.subscribe(channel, (message) => received.push(message.payload.n));
    for (let n = 1; n <= 5; n += 1) await restPublish(HTTP_B, channel, { n });
    await until(() => received.length === 5, "the first five");
    // Stop A (SIGTERM: it drains and closes the socket with 4501); publish on B while A is down.
    assert.equal((await fetch(CONTROL + "/stop", { method: "POST" })).status, 200);
    for (let n = 6; n <= 10; n += 1) await restPublish(HTTP_B, channel, { n });
    assert.equal((await fetch(CONTROL + "/start", { method: "POST" })).status, 200);
    for (let n = 11; n <= 12; n += 1) await restPublish(HTTP_B, channel, { n });
    await until(() => received.length >= 12, "every message after the restart", 30000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a duplicate would arrive meanwhile
    assert.deepEqual(received, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert.equal(gaps, 0);
    assert.equal(rt.transport, "websocket");
  } finally {
    rt.close();
  }
});
