// The test fixture copies this directory to a temporary one and adds two files:
// sightline-ext.js (from static/) and config.js (the collector to send to).
import { API_HOST, WRITE_KEY } from './config.js';
import { init, track, identify, page, flush } from './sightline-ext.js';

// synchronously, at the top level: runtime.onInstalled must be registered in this turn
init({ apiHost: API_HOST, writeKey: WRITE_KEY });

// the test drives the worker through this (Playwright's Worker.evaluate)
self.sightlineTest = { track, identify, page, flush };
