/*
 * sightline.js: the Sightline browser snippet (Apache-2.0). Paste into a page:
 *
 *   <script defer src="https://HOST/s.js" data-key="WRITE_KEY"></script>
 *
 * Options are data-* attributes on that tag:
 *   data-api="https://collector.example"  where events go (default: the script's origin)
 *   data-hash="true"          #fragment changes are page views too (hash routers)
 *   data-respect-dnt="false"  send even with Do-Not-Track / Global Privacy Control on
 *   data-auto-click="false"   capture only clicks on elements with data-sl-event="Name"
 *   data-cookieless="true"    nothing on the device and no anonymousId: the collector
 *                             derives the visitor's id (a product in cookieless mode)
 *
 * Calls made before the script has loaded are queued by the optional inline stub
 *
 *   <script>window.sightline=window.sightline||function(){(window.sightline.q=window.sightline.q||[]).push(arguments)}</script>
 *   <script>sightline('identify', 'user-42', {plan: 'pro'})</script>
 *
 * and replayed in order *before* the automatic page view, so an early identify() or
 * optOut() already applies to it. Once loaded, sightline.track(...) works as well.
 * API: track(event, props), page(props), identify(userId, traits), group(groupId,
 * traits), alias(newId), reset(), optOut(), optIn(). optIn() is also the consent call: in
 * cookieless mode it keeps a persistent id from then on, and sends an alias without
 * previousId, which the collector completes with the visit's cookieless id.
 *
 * What it records: a page view on load and on every history change (pushState,
 * replaceState, popstate, which a #fragment change fires too) to a URL not counted yet
 * (the hash counts with data-hash); clicks on
 * links, buttons and [data-sl-event] elements (with their data-sl-prop-* values);
 * engagement (visible ms, deepest scroll %) when the page is hidden, left, or replaced
 * by a SPA navigation. Every message has context.page (url, path, title, referrer,
 * search, hash) / screen / viewport / locale / timezone / library / sessionId. The
 * campaign (UTM parameters, ad click ids, channel) is a pure function of the page URL
 * and referrer, so the worker derives context.campaign from context.page for every
 * message, with one parser and the full click-id list, instead of this file.
 *
 * Storage (localStorage, or a plain object where that is blocked): sl_aid anonymous id
 * (also in a first-party cookie), sl_uid user id, sl_sid session, sl_opt opted out,
 * sl_b_<ms><messageId> one message not yet delivered. Nothing at all is stored, and no
 * cookie set, while Do-Not-Track / GPC is honoured, nor in cookieless mode before optIn()
 * (a plain object for the page's life, no session id: the collector sessionises).
 *
 * The file served at /s.js is static/sightline.min.js, this file minified by terser
 * (`npm run build`; package.json has the options). tests/browser/test_snippet_asset.py
 * checks that it is built from this file and that it fits the 2 KB gzipped budget.
 */
((win, doc, nav, loc, version) => {
  let stub = win.sightline, tag = doc.currentScript,
    option = name => tag.getAttribute('data-' + name), writeKey = option('key');
  if (!writeKey || stub?.v) return; // no key, or the tag twice on the page: stop

  let api = option('api') || new URL(tag.src).origin, batchUrl = api + '/v1/batch',
    hashRouting = option('hash') == 'true', cookieless = option('cookieless') == 'true',
    dnt = option('respect-dnt') != 'false' && (nav.doNotTrack == 1 || nav.globalPrivacyControl),
    now = Date.now, isoNow = () => new Date().toISOString(), json = JSON.stringify,
    listen = (type, handler) => addEventListener(type, handler, true),
    // every blob: URL ends in a random (v4) UUID; unlike crypto.randomUUID() this works
    // on plain-http pages too (the empty blobs are freed with the page)
    uuid = () => URL.createObjectURL(new Blob).slice(-36),
    store = {}, anonymousId, page, referrer = doc.referrer,
    flushTimer, inFlight, backoff = 0, fetchAnswered, usePixel,
    visibleSince, maxScroll, countedUrl,
    silenced = () => dnt || store.sl_opt,

    // --- identity -------------------------------------------------------------------
    // The anonymous id lives in a first-party cookie (one year, renewed on each load)
    // and in the store, so losing either one alone keeps the visitor.
    // (nothing in cookieless mode)
    setAnonymousId = id => cookieless || dnt || (store.sl_aid = anonymousId = id,
      doc.cookie = 'sl_aid=' + id + ';max-age=31536000;path=/;samesite=lax' + (loc.protocol > 'https' ? ';secure' : '')),
    persist = () => {
      try {
        store = Object.assign(localStorage, store);
      } catch (e) {} // blocked: a plain object for this page's life
      setAnonymousId(doc.cookie.match(/sl_aid=([\w-]+)/)?.[1] || store.sl_aid || uuid());
    },
    // sl_sid = "id.lastEventMs": a new id after 30 minutes without an event
    sessionId = (last = (store.sl_sid || '').split('.'), at = now()) => (
      at - last[1] < 18e5 || (last[0] = uuid()), store.sl_sid = last[0] + '.' + at, last[0]),

    // --- messages -------------------------------------------------------------------
    // Every message is stored as it is recorded (key "sl_b_<ms><messageId>", one key
    // per message so tabs never overwrite each other's) and deleted only once the
    // collector has taken it: whatever is stored is what is left to send, after a
    // failure, offline, or on the next page load. A resend carries the same messageId,
    // which the collector deduplicates. `page` stays until the next page view, so events
    // (and the engagement of a page being left) go with the view they belong to.
    record = (type, fields, messageId = uuid()) => {
      try {
        silenced() || (store['sl_b_' + now() + messageId] = json({
          type, messageId, timestamp: isoNow(), anonymousId, userId: store.sl_uid,
          context: {
            page,
            screen: { width: screen.width, height: screen.height },
            viewport: { width: innerWidth, height: innerHeight },
            locale: nav.language,
            timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
            library: { name: 'sightline.js', version },
            sessionId: sessionId()
          },
          ...fields
        }));
      } catch (e) {} // storage full: it is dropped rather than break the page
      flushTimer = flushTimer || setTimeout(flush, 1e3);
    },
    storedKeys = () => Object.keys(store).filter(key => !key.indexOf('sl_b_')).sort(),
    forget = keys => keys.map(key => delete store[key]),

    // --- transport ------------------------------------------------------------------
    // flush() sends up to 40 stored messages as one /v1/batch body, one request at a
    // time, by the first of these that works:
    // 1. sendBeacon, when the page is hidden or left (hiding == 1): the one request
    //    every browser lets outlive the page, but blind to the answer. It even reports
    //    success for a beacon the page's Content-Security-Policy blocks, so it is used
    //    only once a fetch from this page was answered (fetchAnswered).
    // 2. fetch keepalive with a text/plain body (no CORS preflight), whose status the
    //    queue needs: 2xx is delivered and 4xx never will be (bad key, invalid message),
    //    so both are deleted; 5xx (503 + Retry-After: the queue is down) is retried.
    // 3. the pixel, /p.gif?d=<the same body> with one message per image (the URL must
    //    stay under 8 KB), for the rest of this page once a fetch failed with no answer: a
    //    CSP whose connect-src lacks the collector, a blocker, an origin the collector
    //    does not grant. The image decodes once the collector took the messages or
    //    refused them for good, and errs while it cannot store them.
    // A failure is retried after a backoff of 1 s doubling up to a minute. Offline,
    // during a backoff or with a request in flight, nothing is sent: the messages stay
    // stored for the "online" event, the next send or the next page load.
    flush = (hiding, keys = storedKeys(), sending, body, image) => {
      clearTimeout(flushTimer);
      flushTimer = 0;
      while (keys[500]) delete store[keys.shift()]; // bounded: the oldest go
      sending = keys.slice(0, usePixel ? 1 : 40);
      body = json({ writeKey, sentAt: isoNow(), batch: sending.map(key => JSON.parse(store[key])) });
      silenced() || inFlight || !nav.onLine || !sending[0] || (
        !usePixel && fetchAnswered && hiding == 1 && nav.sendBeacon(batchUrl, body)
          ? forget(sending)
          : inFlight = (usePixel
            ? (image = new Image, image.src = api + '/p.gif?d=' + encodeURIComponent(body), image.decode())
            : fetch(batchUrl, { method: 'POST', body, keepalive: true, credentials: 'include' })
          ).then((response = 0) => {
            if (response.status > 499) throw response;
            forget(sending);
            fetchAnswered = 1;
            flush(inFlight = backoff = 0); // and what was recorded meanwhile
          }).catch(failure => inFlight = setTimeout(
            () => flush(inFlight = 0),
            backoff = Math.min(2 * backoff || 1e3, 6e4),
            usePixel = !failure.status)));
    },

    // --- engagement -----------------------------------------------------------------
    // Visible time since the last engagement event (hiding twice never counts the same
    // millisecond twice) and the deepest scroll, in percent, of the current page view.
    onScroll = () => maxScroll = Math.max(maxScroll,
      (scrollY + innerHeight) * 100 / doc.documentElement.scrollHeight | 0),
    engagement = (engaged = visibleSince && now() - visibleSince) => (
      visibleSince = !doc.hidden && now(),
      engaged && record('engagement', { properties: { engaged_ms: engaged, max_scroll_pct: maxScroll } })),
    // pagehide can come before visibilitychange: stop the clock
    onHide = () => (engagement(), visibleSince = 0, flush(1)),

    // --- page views -----------------------------------------------------------------
    urlKey = () => loc.pathname + loc.search + (hashRouting ? loc.hash : ''),
    pageContext = () => page = {
      url: loc.href, path: loc.pathname, title: doc.title, referrer, search: loc.search, hash: loc.hash
    },
    pageView = properties => {
      countedUrl && page.url != loc.href && (referrer = page.url); // a SPA view's referrer is the view before it
      countedUrl = urlKey();
      pageContext();
      record('page', { name: properties?.name, properties });
    },
    // Load and every history change end here. A URL already counted is not counted
    // again, so state-only replaceState calls, routers that push twice and popstate +
    // hash changes (popstate) make one page view each.
    navigated = () => urlKey() != countedUrl && (countedUrl && engagement(), maxScroll = 0, pageView(), onScroll()),

    // --- clicks ---------------------------------------------------------------------
    onClick = (event, target = event.target, element = target.closest('[data-sl-event]') ||
      option('auto-click') != 'false' && target.closest('a,button,[role=button],[type=submit]'), properties) => {
      if (element) {
        properties = {
          tag: element.localName,
          text: (element.innerText || element.value || '').trim().slice(0, 100),
          id: element.id,
          classes: element.className,
          selector: element.localName + (element.id ? '#' + element.id
            : element.classList[0] ? '.' + element.classList[0] : ''),
          // links know their href, host and pathname; other elements have none
          href: element.href,
          outbound: !!element.host && element.host != loc.host,
          download: element.hasAttribute('download') ||
            /\.(pdf|zip|exe|dmg|csv|xlsx?|docx?)$/i.test(element.pathname)
        };
        for (target of element.attributes) {
          target.name.indexOf('data-sl-prop-') || (properties[target.name.slice(13)] = target.value);
        }
        record('click', { event: element.getAttribute('data-sl-event') || 'click', properties });
      }
    },

    // --- API ------------------------------------------------------------------------
    sightline = win.sightline = (method, ...args) => sightline[method] && sightline[method](...args);

  cookieless || persist();
  pageContext();

  Object.assign(sightline, {
    v: version,
    track: (event, properties) => record('track', { event, properties }),
    page: pageView,
    identify: (userId, traits) => (userId && (store.sl_uid = '' + userId), record('identify', { traits })),
    group: (groupId, traits) => record('group', { groupId, traits }),
    alias: userId => record('alias', { userId, previousId: store.sl_uid || anonymousId }),
    reset: () => setAnonymousId(uuid(), delete store.sl_uid, delete store.sl_sid),
    optOut: () => forget(storedKeys(store.sl_opt = 1)),
    // also the consent upgrade: in cookieless mode, a persistent id from now on, which the
    // collector aliases to the visit's cookieless id (an alias without previousId)
    optIn: () => (delete store.sl_opt, cookieless && (cookieless = 0, persist(), record('alias', { userId: anonymousId }))),
  });

  for (const name of ['pushState', 'replaceState']) {
    const original = history[name];
    history[name] = function () {
      original.apply(this, arguments);
      navigated();
    };
  }
  listen('popstate', navigated);
  listen('click', onClick);
  listen('scroll', onScroll);
  listen('pagehide', onHide);
  listen('online', () => flush(backoff = 0));
  listen('visibilitychange', () => doc.hidden ? onHide() : visibleSince = now());

  for (const call of stub?.q || []) sightline(...call);
  engagement(); // starts the visible-time clock (nothing to record yet)
  navigated(); // its timer also sends what an earlier page could not deliver
})(window, document, navigator, location, '0.1.0');
