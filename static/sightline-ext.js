/*
 * sightline-ext.js: Sightline for browser extensions (Manifest V3). Apache-2.0.
 *
 * An ES module for the extension's service worker and its pages (popup, options, side
 * panel). Ship this file inside the extension: the Chrome Web Store rejects remotely
 * hosted code, so it is bundled, never loaded from the collector.
 *
 *   // background.js  ("background": {"service_worker": "background.js", "type": "module"})
 *   import { init, track } from './sightline-ext.js';
 *   init({ apiHost: 'https://collector.example', writeKey: 'WRITE_KEY' });
 *   chrome.action.onClicked.addListener(() => track('Toolbar Clicked'));
 *
 * manifest.json needs "permissions": ["storage"] and "host_permissions" for the collector,
 * and the product must allow the chrome-extension://<id> origin (the collector checks the
 * Origin header of every request, whatever the host permissions).
 *
 * init() must run synchronously at the top level of the service worker, so that its
 * runtime.onInstalled listener is registered before Chrome dispatches the event: it
 * records "Extension Installed" and "Extension Updated" (with previous_version), and sets
 * the uninstall URL to the collector's pixel, which records "Extension Uninstalled".
 *
 * Every message carries context.extension {id, version}. Ids live in chrome.storage.local
 * (shared by the worker and the pages). Messages are sent with fetch keepalive; those
 * that fail wait in chrome.storage.local (bounded) and are resent on the next send or
 * the next start, with the same messageId, which the collector deduplicates.
 */

const VERSION = '0.1.0';
const LIBRARY = { name: 'sightline-ext.js', version: VERSION };
const SESSION_MS = 30 * 60 * 1000;
const MAX_STORED = 500;
const KEYS = { anonymousId: 'sl_aid', userId: 'sl_uid', session: 'sl_sid', queue: 'sl_queue' };

let config = null;
let ready = null; // resolves to the stored ids once init() has loaded them
let pending = []; // messages recorded in this tick, sent together
let sendScheduled = false;
let sending = Promise.resolve();

const storage = () => chrome.storage.local;

function uuid() {
  return crypto.randomUUID(); // extension origins are secure contexts
}

function extensionContext() {
  const manifest = chrome.runtime.getManifest();
  const context = {
    extension: { id: chrome.runtime.id, version: manifest.version },
    library: LIBRARY,
    locale: navigator.language,
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
  };
  // extension pages have a document; the service worker has none
  if (typeof document !== 'undefined') {
    context.page = {
      url: location.href, path: location.pathname, title: document.title,
      referrer: document.referrer, search: location.search, hash: location.hash,
    };
  }
  return context;
}

async function loadIds() {
  const stored = await storage().get([KEYS.anonymousId, KEYS.userId]);
  const ids = { anonymousId: stored[KEYS.anonymousId], userId: stored[KEYS.userId] };
  if (!ids.anonymousId) {
    ids.anonymousId = uuid();
    await storage().set({ [KEYS.anonymousId]: ids.anonymousId });
  }
  return ids;
}

async function sessionId() {
  const now = Date.now();
  const { [KEYS.session]: session } = await storage().get(KEYS.session);
  const id = session && now - session.last < SESSION_MS ? session.id : uuid();
  await storage().set({ [KEYS.session]: { id, last: now } });
  return id;
}

/**
 * Starts Sightline. Call it once, synchronously, at the top level of the service worker
 * (and in each extension page that sends events).
 *   apiHost   the collector's origin, e.g. "https://collector.example"
 *   writeKey  the product's write key
 *   uninstallUrl  false to leave the uninstall URL alone (default: record uninstalls)
 */
export function init({ apiHost, writeKey, uninstallUrl = true }) {
  if (!apiHost || !writeKey) throw new Error('sightline: init needs apiHost and writeKey');
  config = { api: apiHost.replace(/\/+$/, ''), writeKey, uninstallUrl };
  ready = loadIds();
  // runtime.onInstalled exists in the service worker; registering it here, synchronously,
  // is what makes Chrome deliver the install event to it
  if (chrome.runtime.onInstalled && typeof document === 'undefined') {
    chrome.runtime.onInstalled.addListener((details) => {
      if (details.reason === 'install') track('Extension Installed');
      else if (details.reason === 'update') {
        track('Extension Updated', { previous_version: details.previousVersion });
      }
    });
  }
  ready.then(() => {
    if (config.uninstallUrl && chrome.runtime.setUninstallURL) return updateUninstallUrl();
  }).catch(() => {});
  // whatever an earlier run could not deliver
  ready.then(() => flush()).catch(() => {});
}

/** The pixel URL Chrome opens when the extension is removed (at most 1023 characters). */
async function updateUninstallUrl() {
  const ids = await ready;
  const message = {
    type: 'track',
    event: 'Extension Uninstalled',
    messageId: uuid(),
    anonymousId: ids.anonymousId,
    userId: ids.userId,
    // no timestamp: the collector stamps a pixel hit with the time it arrives
    context: { extension: extensionContext().extension, library: LIBRARY },
  };
  const url = `${config.api}/p.gif?k=${encodeURIComponent(config.writeKey)}` +
    `&d=${encodeURIComponent(JSON.stringify(message))}`;
  await chrome.runtime.setUninstallURL(url.length <= 1023 ? url : `${config.api}/p.gif?` +
    new URLSearchParams({ k: config.writeKey, t: 'track', e: 'Extension Uninstalled', a: ids.anonymousId }));
}

function record(type, fields) {
  if (!config) throw new Error('sightline: call init() first');
  const timestamp = new Date().toISOString();
  const messageId = uuid();
  const done = (async () => {
    const ids = await ready;
    const message = Object.assign({
      type, messageId, timestamp, anonymousId: ids.anonymousId,
      context: Object.assign(extensionContext(), { sessionId: await sessionId() }),
    }, ids.userId ? { userId: ids.userId } : {}, fields);
    pending.push(message);
    if (!sendScheduled) {
      sendScheduled = true;
      // everything recorded in this turn goes in one request
      setTimeout(() => {
        sendScheduled = false;
        flush();
      }, 0);
    }
  })();
  return done;
}

/** Sends the pending messages plus the stored ones; returns once the request settled. */
export function flush() {
  sending = sending.then(sendNow, sendNow);
  return sending;
}

async function sendNow() {
  const fresh = pending.splice(0);
  const { [KEYS.queue]: stored = [] } = await storage().get(KEYS.queue);
  const batch = stored.concat(fresh).slice(-MAX_STORED);
  if (!batch.length) return;
  // stored before the request: Chrome may stop an idle service worker at any moment
  if (fresh.length) await storage().set({ [KEYS.queue]: batch });
  let delivered = false;
  try {
    const response = await fetch(`${config.api}/v1/batch`, {
      method: 'POST',
      body: JSON.stringify({ writeKey: config.writeKey, sentAt: new Date().toISOString(), batch }),
      keepalive: true,
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
    });
    // 4xx will never succeed (bad key, invalid message): drop rather than resend forever
    delivered = response.status < 500;
  } catch (error) {
    delivered = false; // offline or the collector is unreachable
  }
  if (delivered) await storage().set({ [KEYS.queue]: [] });
}

/** Records a custom event. */
export function track(event, properties = {}) {
  return record('track', { event, properties });
}

/** Records a page view of an extension page (popup, options...). */
export function page(properties = {}) {
  return record('page', { name: properties.name, properties });
}

/** Sets the user id kept for every later event (until reset) and records traits. */
export async function identify(userId, traits = {}) {
  if (!config) throw new Error('sightline: call init() first');
  const ids = await ready;
  if (userId != null) {
    ids.userId = String(userId);
    await storage().set({ [KEYS.userId]: ids.userId });
    if (config.uninstallUrl && chrome.runtime.setUninstallURL) updateUninstallUrl().catch(() => {});
  }
  return record('identify', { traits });
}

/** Forgets the user id and starts a new anonymous id and session. */
export async function reset() {
  const ids = await ready;
  ids.userId = undefined;
  ids.anonymousId = uuid();
  await storage().remove([KEYS.userId, KEYS.session]);
  await storage().set({ [KEYS.anonymousId]: ids.anonymousId });
}
