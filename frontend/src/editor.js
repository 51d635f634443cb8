// The co-editing page: Tiptap 3 on a Yjs document synced by y-websocket's stock provider.
// Configuration comes from <script id="collab-config" type="application/json"> rendered by Django.
import { Editor, Extension } from '@tiptap/core'
import { Plugin } from '@tiptap/pm/state'
import { Decoration, DecorationSet } from '@tiptap/pm/view'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const COLORS = ['#d7263d', '#1b998b', '#2e86ab', '#f46036', '#5f0f40', '#6a4c93', '#c5283d', '#0f7173']

function colorFor (name) {
  let hash = 0
  for (const ch of name) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0
  return COLORS[hash % COLORS.length]
}

function el (tag, attrs = {}, text = '') {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value)
  if (text) node.textContent = text
  return node
}

// "Start writing…" in an empty document (a decoration: nothing is stored in the Yjs document).
const Placeholder = Extension.create({
  name: 'webconnectPlaceholder',
  addOptions () { return { text: 'Start writing…' } },
  addProseMirrorPlugins () {
    const text = this.options.text
    return [new Plugin({
      props: {
        decorations (state) {
          const doc = state.doc
          const first = doc.firstChild
          if (doc.childCount !== 1 || !first || !first.isTextblock || first.content.size > 0) return null
          return DecorationSet.create(doc, [Decoration.node(0, first.nodeSize, { class: 'is-empty', 'data-placeholder': text })])
        }
      }
    })]
  }
})

// The inline title: saved through the REST API when it loses focus or on Enter.
function titleEditor () {
  const input = document.querySelector('[data-testid="doc-title-input"]')
  if (!input) return
  let saved = input.value
  async function save () {
    const title = input.value.trim()
    if (!title) { input.value = saved; return }
    if (title === saved) return
    input.setAttribute('aria-busy', 'true')
    try {
      const response = await fetch(input.dataset.renameUrl, {
        method: 'PATCH',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-CSRFToken': input.dataset.csrf },
        body: JSON.stringify({ title })
      })
      if (!response.ok) throw new Error(((await response.json().catch(() => ({}))).detail) || response.statusText)
      saved = title
      document.title = `${title} · webconnect`
      input.dataset.state = 'saved'
      input.title = 'Saved'
    } catch (error) {
      input.dataset.state = 'error'
      input.title = `Not saved: ${error.message}`
    } finally {
      input.removeAttribute('aria-busy')
    }
  }
  input.addEventListener('blur', save)
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') { event.preventDefault(); input.blur() }
    if (event.key === 'Escape') { input.value = saved; input.blur() }
  })
}

function start () {
  const configNode = document.getElementById('collab-config')
  if (!configNode) return
  const config = JSON.parse(configNode.textContent)
  titleEditor()
  const root = document.querySelector('[data-collab-editor]')
  const status = document.querySelector('[data-testid="connection-status"]')
  const avatars = document.querySelector('[data-testid="avatars"]')
  const toolbar = document.querySelector('[data-testid="toolbar"]')

  const ydoc = new Y.Doc()
  const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws'
  const serverUrl = config.wsBase || `${scheme}://${window.location.host}/ws/docs`
  // The session cookie authenticates the socket (same origin).
  const provider = new WebsocketProvider(serverUrl, String(config.documentId), ydoc, { maxBackoffTime: 5000 })
  const user = { name: config.userName, color: colorFor(config.userName) }

  const editor = new Editor({
    element: root,
    editable: Boolean(config.canEdit),
    // Tiptap's stylesheet is collab/static/collab/prosemirror.css: the CSP refuses injected <style> elements.
    injectCSS: false,
    extensions: [
      StarterKit.configure({ undoRedo: false, link: { openOnClick: false } }),
      Collaboration.configure({ document: ydoc }),
      CollaborationCaret.configure({ provider, user }),
      Placeholder.configure({ text: config.canEdit ? 'Start writing…' : 'This document is empty.' })
    ]
  })

  // --- connection indicator: connected / reconnecting / offline with pending edits
  let pending = false
  let online = navigator.onLine
  ydoc.on('update', (_update, origin) => {
    if (origin !== provider && !(provider.wsconnected && provider.synced)) pending = true
    render()
  })
  provider.on('sync', (synced) => {
    // The server answers our sync only after our pending edits are committed.
    if (synced) pending = false
    render()
  })
  provider.on('status', render)
  window.addEventListener('online', () => { online = true; render() })
  window.addEventListener('offline', () => { online = false; render() })
  let denied = ''
  provider.on('connection-close', (event) => {
    if (!event) return
    if (event.code === 4403) {
      denied = 'Access to this document was revoked.'
      provider.shouldConnect = false
      editor.setEditable(false)
    } else if (event.code === 4002) {
      // Signed out (here or in another tab) or the credential ended: nothing to reconnect with.
      denied = 'You were signed out. Sign in again to keep editing.'
      provider.shouldConnect = false
      editor.setEditable(false)
    } else if (event.code === 4509) {
      // Rights changed (e.g. editor -> viewer): reload to get the right mode.
      window.location.reload()
    }
    render()
  })

  function render () {
    let state
    let label
    if (denied) { state = 'denied'; label = denied } else if (provider.wsconnected && provider.synced) {
      state = 'connected'; label = 'Connected'
    } else if (!online || !provider.shouldConnect) {
      state = 'offline'; label = pending ? 'Offline, edits pending' : 'Offline'
    } else {
      state = 'reconnecting'; label = pending ? 'Reconnecting, edits pending' : 'Reconnecting…'
    }
    status.dataset.state = state
    status.dataset.pending = pending ? 'true' : 'false'
    status.textContent = label
  }

  // --- avatar row
  function renderAvatars () {
    avatars.replaceChildren()
    const seen = new Set()
    for (const [clientId, state] of provider.awareness.getStates()) {
      if (!state || !state.user) continue
      const key = state.user.name + (clientId === ydoc.clientID ? ' (you)' : '')
      if (seen.has(key)) continue
      seen.add(key)
      const avatar = el('span', { class: 'avatar', title: key, 'data-testid': 'avatar' }, state.user.name.slice(0, 2).toUpperCase())
      avatar.style.background = state.user.color
      avatar.dataset.name = state.user.name
      avatars.appendChild(avatar)
    }
  }
  provider.awareness.on('change', renderAvatars)
  renderAvatars()

  // --- toolbar
  const actions = {
    h1: () => editor.chain().focus().toggleHeading({ level: 1 }).run(),
    h2: () => editor.chain().focus().toggleHeading({ level: 2 }).run(),
    bold: () => editor.chain().focus().toggleBold().run(),
    italic: () => editor.chain().focus().toggleItalic().run(),
    bullet: () => editor.chain().focus().toggleBulletList().run(),
    ordered: () => editor.chain().focus().toggleOrderedList().run(),
    code: () => editor.chain().focus().toggleCode().run(),
    codeblock: () => editor.chain().focus().toggleCodeBlock().run(),
    link: () => {
      const previous = editor.getAttributes('link').href || ''
      const href = window.prompt('Link address', previous)
      if (href === null) return
      if (href === '') editor.chain().focus().unsetLink().run()
      else editor.chain().focus().extendMarkRange('link').setLink({ href }).run()
    },
    undo: () => editor.chain().focus().undo().run(),
    redo: () => editor.chain().focus().redo().run()
  }
  if (toolbar) {
    toolbar.addEventListener('click', (event) => {
      const button = event.target.closest('button[data-action]')
      if (button && actions[button.dataset.action]) actions[button.dataset.action]()
    })
    if (!config.canEdit) for (const button of toolbar.querySelectorAll('button')) button.disabled = true
    editor.on('transaction', () => {
      for (const button of toolbar.querySelectorAll('button[data-mark]')) {
        const [name, level] = button.dataset.mark.split(':')
        button.classList.toggle('active', editor.isActive(name, level ? { level: Number(level) } : undefined))
      }
    })
  }
  render()
  window.webconnectEditor = { editor, ydoc, provider, Y }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start)
else start()
