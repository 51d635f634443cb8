// The stock y-websocket WebsocketProvider (Node, `ws` as the WebSocket) against our server.
// Usage: node interop.cjs WS_BASE DOC_ID TOKEN
// Waits for "from python", appends " from node", then waits for "python-ack"; prints JSON; exits 0.
// Resolved through NODE_PATH=frontend/node_modules (CommonJS honours it).
const WebSocket = require('ws')
const Y = require('yjs')
const { WebsocketProvider } = require('y-websocket')

const [wsBase, docId, token] = process.argv.slice(2)
class BearerWebSocket extends WebSocket {
  constructor (url, protocols) {
    super(url, protocols, { headers: { Authorization: `Bearer ${token}` } })
  }
}

const ydoc = new Y.Doc()
const provider = new WebsocketProvider(`${wsBase}/ws/docs`, docId, ydoc, { WebSocketPolyfill: BearerWebSocket })
provider.awareness.setLocalStateField('user', { name: 'node', color: '#123456' })
const text = ydoc.getText('t')
const deadline = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, text: text.toString(), synced: provider.synced }))
  process.exit(1)
}, 20000)

let wrote = false
let done = false
function check () {
  if (done) return
  const current = text.toString()
  if (!wrote && provider.synced && current.includes('from python')) {
    wrote = true
    text.insert(current.length, ' from node')
  }
  if (wrote && current.includes('python-ack')) {
    done = true
    clearTimeout(deadline)
    console.log(JSON.stringify({ ok: true, text: current, synced: provider.synced }))
    provider.destroy()
    setTimeout(() => process.exit(0), 100)
  }
}
provider.on('sync', check)
text.observe(check)
