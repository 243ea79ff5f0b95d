// Driver for `cometchat-fsm conform` (specs/driver-protocol.md): the real CometChat JavaScript SDK
// (@cometchat/chat-sdk-javascript) under Node, in virtual time.
//
// - Time: @sinonjs/fake-timers replaces setTimeout/setInterval/Date; `advance` ticks the clock, and
//   after every command the clock is ticked by 0 so that what is due at this instant happens now.
// - Server: a fake WebSocket class and a fake fetch() play the CometChat servers. The login request
//   answers after the server latency, the other REST calls (/me, settings, logout, analytics) at
//   once; a socket opens after the latency (refused with close code 1013 while the server is
//   overloaded), answers the auth frame at once (accepted, or rejected and closed with code 4001
//   while auth is rejected) and answers every ping with a pong after the latency.
// - No network at all: nothing leaves this process.
// - `reset` runs a fresh copy of the SDK (its state is module-global) with a fresh clock and an
//   empty localStorage; the sockets and timers of the previous copy are dead.
//
// stdin: one JSON command a line; stdout: one JSON answer a line; stderr: this driver's log.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import readline from 'node:readline';

const MODULES = process.env.COMETCHAT_FSM_JS_MODULES;
if (!MODULES) {
  process.stderr.write('driver.mjs: set COMETCHAT_FSM_JS_MODULES to the directory holding node_modules\n');
  process.exit(2);
}
const require = createRequire(path.join(MODULES, 'package.json'));
const FakeTimers = require('@sinonjs/fake-timers');
const SDK = '@cometchat/chat-sdk-javascript';
const SDK_VERSION = require(`${SDK}/package.json`).version;
const FAKE_TIMERS_VERSION = require('@sinonjs/fake-timers/package.json').version;
// The SDK is one bundled file whose state lives in its module scope: compiled once, it is run again
// for every fresh client (about 2 ms, against 30 ms for a new `require`, which also leaks the copy).
const SDK_MODULE = new Function('module', 'exports', 'require',
  fs.readFileSync(require.resolve(SDK), 'utf8'));
function loadSdk() {
  const module = { exports: {} };
  SDK_MODULE(module, module.exports, require);
  return module.exports.CometChat;
}
const APP_ID = 'app';
const AUTH_KEY = 'auth-key';
const LOG = (...parts) => process.stderr.write(parts.join(' ') + '\n');

// --- Browser globals the SDK reads -------------------------------------------------------------------
const store = new Map();
globalThis.window = globalThis;
globalThis.navigator = { userAgent: 'node', platform: 'node', onLine: true };
globalThis.location = { hostname: 'localhost', origin: 'http://localhost', href: 'http://localhost/', protocol: 'http:' };
globalThis.document = {
  hasFocus: () => true, addEventListener() {}, removeEventListener() {}, visibilityState: 'visible', hidden: false,
  querySelector: () => null, querySelectorAll: () => [], body: { appendChild() {} }, head: { appendChild() {} },
  createElement: () => ({ style: {}, setAttribute() {}, appendChild() {} }),
};
globalThis.screen = { width: 1280, height: 800 };
globalThis.matchMedia = () => ({ matches: false, addListener() {}, removeListener() {}, addEventListener() {},
  removeEventListener() {} });
globalThis.addEventListener = () => {};
globalThis.removeEventListener = () => {};
globalThis.localStorage = {
  getItem: (k) => (store.has(k) ? store.get(k) : null),
  setItem: (k, v) => { store.set(k, String(v)); },
  removeItem: (k) => { store.delete(k); },
  clear: () => { store.clear(); },
  key: (i) => [...store.keys()][i] ?? null,
  get length() { return store.size; },
};

const clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'], now: 0 });

// --- The fake server ---------------------------------------------------------------------------------
let generation = 0; // bumps at every reset: anything of an older SDK copy is dead
const server = { latencyMs: 0, reject: false, overload: null, sockets: [], uid: null };
let events = [];

// Run `fn` after `ms` of virtual time; 0 means in this very instant (a microtask), since fake-timers
// moves a 0 ms timer set during a tick to the next millisecond.
function after(ms, fn) {
  if (ms > 0) setTimeout(fn, ms); else queueMicrotask(fn);
}

function answer(body) {
  return { ok: true, status: 200, headers: new Map(), json: async () => body, text: async () => JSON.stringify(body) };
}

globalThis.fetch = (url, options = {}) => {
  const gen = generation;
  const u = String(url);
  const login = u.match(/\/users\/([^/]+)\/auth_tokens/);
  return new Promise((resolve) => {
    after(login ? server.latencyMs : 0, () => {
      if (gen !== generation) return; // the old copy's request: never answered
      if (login) {
        const uid = decodeURIComponent(login[1]);
        server.uid = uid;
        resolve(answer({ data: { uid, name: uid, authToken: `token-${uid}`, status: 'online' } }));
      } else if (u.endsWith('/me')) {
        resolve(answer({ data: { uid: server.uid, name: server.uid, status: 'online' } }));
      } else {
        resolve(answer({ data: {} }));
      }
    });
  });
};

function currentUid() {
  try {
    const raw = store.get(`${APP_ID}:common_store/user`);
    let value = raw ? JSON.parse(raw) : null; // localforage keeps the user JSON-encoded twice
    if (typeof value === 'string') value = JSON.parse(value);
    return value && typeof value.uid === 'string' ? value.uid : null;
  } catch { return null; }
}

class FakeWebSocket {
  static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
  constructor(url) {
    this.url = url; this.readyState = 0; this.gen = generation; this.silent = false;
    this.listeners = { message: [], open: [], close: [], error: [] };
    this.onopen = this.onclose = this.onmessage = this.onerror = null;
    server.sockets.push(this);
    LOG(`t=${clock.now} socket #${server.sockets.length} opening`);
    after(server.latencyMs, () => this.serverAccepts());
  }
  addEventListener(type, fn) { (this.listeners[type] ||= []).push(fn); }
  removeEventListener(type, fn) { this.listeners[type] = (this.listeners[type] || []).filter((f) => f !== fn); }
  emit(type, event) {
    if (this.gen !== generation) return;
    const handler = this[`on${type}`];
    if (handler) handler.call(this, event);
    for (const fn of [...(this.listeners[type] || [])]) fn.call(this, event);
  }
  get live() { return this.gen === generation && (this.readyState === 0 || this.readyState === 1); }
  serverAccepts() {
    if (!this.live || this.readyState !== 0 || this.silent) return;
    if (server.overload !== null) { this.serverCloses(1013, 'try again later'); return; }
    this.readyState = 1;
    this.emit('open', {});
  }
  send(data) {
    if (this.readyState !== 1 || this.silent) return;
    let msg;
    try { msg = JSON.parse(String(data)); } catch { return; }
    if (msg && msg.type === 'auth') {
      if (server.reject) {
        this.deliver({ appId: APP_ID, type: 'auth', sender: msg.sender, body: { code: '401', status: 'ERROR' } });
        this.serverCloses(4001, 'authentication rejected');
      } else {
        this.deliver({ appId: APP_ID, type: 'auth', sender: msg.sender, deviceId: 'server', body: { code: '200', status: 'OK' } });
      }
    } else if (msg && msg.action === 'ping') {
      after(server.latencyMs, () => this.deliver({ action: 'pong' }));
    }
  }
  deliver(obj) {
    if (this.readyState === 1 && !this.silent) this.emit('message', { data: JSON.stringify(obj) });
  }
  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return;
    this.readyState = 2;
    LOG(`t=${clock.now} client closes a socket (${code})`);
    after(0, () => { this.readyState = 3; this.emit('close', { code, reason, wasClean: true }); });
  }
  serverCloses(code, reason) {
    if (this.readyState >= 2) return;
    LOG(`t=${clock.now} server closes a socket (${code})`);
    this.readyState = 3;
    this.emit('close', { code, reason, wasClean: false });
  }
}
globalThis.WebSocket = FakeWebSocket;

function currentSocket() {
  const live = server.sockets.filter((s) => s.live);
  return live.length ? live[live.length - 1] : null;
}

// --- One client --------------------------------------------------------------------------------------
let CometChat = null;

async function settle() { await clock.tickAsync(0); }

async function fresh(command) {
  generation += 1;
  clock.reset();
  store.clear();
  server.latencyMs = 0; server.reject = false; server.overload = null; server.sockets = []; server.uid = null;
  events = [];
  const gen = generation;
  CometChat = loadSdk();
  const auto = command.mode !== 'manual';
  const settings = new CometChat.AppSettingsBuilder().setRegion('eu').autoEstablishSocketConnection(auto).build();
  const at = () => clock.now / 1000;
  const note = (name) => () => { if (gen === generation) events.push({ t: at(), notify: name }); };
  let failed = null;
  CometChat.init(APP_ID, settings).catch((e) => { failed = e; });
  await settle();
  if (failed) throw failed;
  CometChat.addConnectionListener('conform', new CometChat.ConnectionListener({
    onConnected: note('on_connected'), inConnecting: note('on_connecting'), onDisconnected: note('on_disconnected'),
    onFeatureThrottled: note('on_feature_throttled'), onConnectionError: note('on_connection_error'),
  }));
}

function sdkError(e) {
  const err = e && e.error ? e.error : e;
  return { code: String((err && err.code) || 'ERR_UNKNOWN'), message: String((err && err.message) || err),
           details: typeof (err && err.details) === 'string' ? err.details : '' };
}

// Calls whose promise may fail: the answer reports a failure that happens at this instant.
async function call(promiseOrValue) {
  let error = null;
  if (promiseOrValue && typeof promiseOrValue.then === 'function') {
    promiseOrValue.then(() => {}, (e) => { error = e; });
  }
  await settle();
  if (error) throw error;
  return null;
}

const COMMANDS = {
  login: (c) => call(CometChat.login(String(c.uid), AUTH_KEY)),
  logout: () => call(CometChat.logout()),
  connect: () => call(CometChat.connect()),
  disconnect: () => call(CometChat.disconnect()),
  advance: async (c) => { await clock.tickAsync(Math.round(Number(c.seconds) * 1000)); return null; },
  drop: async () => { const s = currentSocket(); if (s) s.serverCloses(1001, 'going away'); await settle(); return null; },
  silent: async () => { const s = currentSocket(); if (s) s.silent = true; await settle(); return null; },
  reject: async (c) => { server.reject = Boolean(c.on); await settle(); return null; },
  latency: async (c) => { server.latencyMs = Math.round(Number(c.seconds) * 1000); await settle(); return null; },
};

async function state() {
  let user = null;
  try {
    const pending = CometChat.getLoggedinUser();
    let got = null;
    pending.then((u) => { got = u; }, () => {});
    await clock.tickAsync(0);
    user = got ? got.getUid() : null;
  } catch { user = null; }
  return { status: CometChat.getConnectionStatus(), user, stored: currentUid(),
           sockets: server.sockets.filter((s) => s.live).length };
}

function take() { const out = events; events = []; return out.length ? out : []; }

async function handle(command) {
  const id = command.id;
  const name = command.cmd;
  if (name === 'init' || name === 'reset') {
    await fresh(command);
    const reply = { id, ok: true, events: take(), state: await state() };
    if (name === 'init') {
      Object.assign(reply, {
        protocol: 1, driver: 'cometchat-js-sdk', implementation: `${SDK}@${SDK_VERSION} on Node ${process.version}, `
          + `@sinonjs/fake-timers@${FAKE_TIMERS_VERSION}`,
        supports: Object.keys(COMMANDS), observes: ['errors', 'user', 'stored', 'sockets'],
        notes: 'connect() and disconnect() return nothing (no results); no ping(), no app-state or network ' +
               'signals (the SDK ignores both), no throttle message (featureThrottled is never set), no ' +
               'reconnect-attempt limit setting; no overload fault (the SDK has no way to receive a ' +
               'retry-after hint); retry times are compared with the draws the SDK does not take',
      });
    }
    return reply;
  }
  if (!CometChat) return { id, ok: false, error: { code: 'ERR_BAD_COMMAND', details: 'init first' }, events: [], state: {} };
  const fn = COMMANDS[name];
  if (!fn) return { id, ok: false, error: { code: 'ERR_UNSUPPORTED', details: String(name) }, events: [], state: {} };
  try {
    const result = await fn(command);
    const evs = take();
    return { id, ok: true, result, events: evs, state: await state() };
  } catch (e) {
    const evs = take();
    return { id, ok: false, error: sdkError(e), events: evs, state: await state() };
  }
}

// Swallow the SDK's own unhandled rejections (logged), so that one of them never ends the driver.
process.on('unhandledRejection', (e) => { LOG('unhandled rejection:', JSON.stringify(sdkError(e))); });
// Keep the SDK's console chatter off stdout (stdout is the protocol).
console.log = console.info = console.warn = console.error = console.debug = (...a) => LOG('[sdk]', ...a.map(String));

const lines = readline.createInterface({ input: process.stdin, terminal: false });
const queue = [];
let busy = false;
async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const line = queue.shift();
    if (!line.trim()) continue;
    let command;
    try { command = JSON.parse(line); } catch (e) {
      process.stdout.write(JSON.stringify({ id: null, ok: false, error: { code: 'ERR_BAD_COMMAND', details: String(e) } }) + '\n');
      continue;
    }
    if (command.cmd === 'quit') { process.exit(0); }
    const reply = await handle(command);
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
  busy = false;
}
lines.on('line', (line) => { queue.push(line); pump(); });
lines.on('close', () => { const wait = () => (busy || queue.length ? setImmediate(wait) : process.exit(0)); wait(); });
