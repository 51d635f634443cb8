// Types for webconnect-realtime (src/index.js). Hand-written; keep in step with the code.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface Identity {
  user_id: number | null;
  name: string;
}

export interface Position {
  offset: number;
  epoch: string;
}

export interface Message {
  channel: string;
  offset: number;
  epoch: string;
  from: Identity;
  ts: number;
  encoding: "json" | "base64";
  payload: Json;
}

export interface Subscription {
  channel: string;
  offset: number;
  epoch: string;
  /** The last answer's `recovered`: false when missed messages were gone (reload state then). */
  recovered: boolean | undefined;
  callback: (message: Message) => void;
  onEnd?: (error: RealtimeError) => void;
}

export interface Frame {
  header: { type: string; [key: string]: Json };
  payload: Json;
}

export interface Options {
  /** A bearer token (OAuth2): REST calls send it, the WebSocket gets a one-time ticket minted with it. */
  token?: string;
  /** Mints a one-time ticket for every (re)connect (cross-origin pages). */
  ticket?: () => Promise<string>;
  /** Base of the REST and SSE URLs (default: the WebSocket URL's origin). */
  httpUrl?: string;
  /** Django's CSRF token, for REST publishes from a signed-in page in SSE mode. */
  csrfToken?: string;
  /** A WebSocket implementation (default globalThis.WebSocket; in Node 18/20 pass `ws`'s). */
  WebSocket?: unknown;
  /** Reconnect delay: full jitter below min(backoffMax, backoffBase * 2^(attempt-1)) ms. */
  backoffBase?: number;
  backoffMax?: number;
  requestTimeout?: number;
  /** Fall back to Server-Sent Events + REST when the WebSocket cannot be opened (default true). */
  fallback?: boolean;
  /** Failed WebSocket reconnects in a row before falling back (default 2; the first connect falls back at once). */
  fallbackAfter?: number;
  /** In SSE mode, try the WebSocket again this often (ms, default 30000). */
  upgradeInterval?: number;
  onGap?: (subscription: Subscription) => void;
  onEvent?: (frame: Frame) => void;
  trace?: (direction: "<" | ">", raw: string) => void;
}

export interface History extends Position {
  messages: Frame[];
}

export interface Presence {
  user_id: number | null;
  name: string;
  connections: number;
}

export class RealtimeError extends Error {
  constructor(code: string, message: string, retryAfter?: number);
  code: string;
  retryAfter?: number;
  status?: number;
}

export class WebconnectRealtime {
  constructor(url?: string, options?: Options);
  static absolute(url: string): string;
  readonly url: string;
  readonly httpUrl: string;
  /** "websocket", "sse" (the fallback) or null before connecting. */
  readonly transport: "websocket" | "sse" | null;
  readonly subscriptions: Map<string, Subscription>;
  onclose: ((event: { code: number; reason?: string }, reason?: string) => void) | null;
  /** Called when the client switched to the SSE fallback (it is live again; `open()` was not called). */
  onfallback: (() => void) | null;
  closeReason?: string;
  connect(): Promise<this>;
  open(): Promise<void>;
  reconnect(): Promise<void>;
  close(): void;
  subscribe(
    channel: string,
    callback?: (message: Message) => void,
    options?: { since?: Position; onEnd?: (error: RealtimeError) => void },
  ): Promise<Subscription>;
  unsubscribe(channel: string): Promise<void>;
  publish(channel: string, payload: Json, options?: { encoding?: "base64" }): Promise<Position>;
  request(method: string, payload?: Json, options?: { timeout?: number }): Promise<Json>;
  presence(channel: string): Promise<Presence[]>;
  history(channel: string, limit?: number): Promise<History>;
}

export default WebconnectRealtime;
