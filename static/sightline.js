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
 *
 * Calls made before the script has loaded are queued by the optional inline stub
 *
 *   <script>window.sightline=window.sightline||function(){(window.sightline.q=window.sightline.q||[]).push(arguments)}</script>
 *   <script>sightline('identify', 'user-42', {plan: 'pro'})</script>
 *
 * and replayed in order *before* the automatic page view, so an early identify() or
 * optOut() already applies to it. Once loaded, sightline.track(...) works as well.
 * API: track(event, props), page(props), identify(userId, traits), group(groupId,
 * traits), alias(newId), reset(), optOut(), optIn().
 *
 * What it records: a page view on load and on every history change (pushState,
 * replaceState, popstate; hashchange with data-hash) to a URL not counted yet; clicks on
 * links, buttons and [data-sl-event] elements (with their data-sl-prop-* values);
 * engagement (visible ms, deepest scroll %) when the page is hidden, left, or replaced
 * by a SPA navigation. Every message has context.page / screen / viewport / locale /
 * timezone / library / sessionId. context.campaign is not sent: it is a pure function
 * of context.page.search, and the worker's enrichment derives it from there (those
 * bytes did not fit the budget).
 *
 * Storage (localStorage, or a plain object where that is blocked): sl_aid anonymous id
 * (also in a first-party cookie), sl_uid user id, sl_sid session, sl_opt opted out,
 * sl_b_<ms><messageId> one message not yet delivered. Nothing at all is stored, and no
 * cookie set, while Do-Not-Track / GPC is honoured.
 *
 * The file served is this one minified by rjsmin, which drops whitespace and comments
 * and renames nothing; the budget is 2 KB gzipped (tests/browser/test_snippet_asset.py
 * measures it). So names are one or two letters, like a mangler's output, and this
 * glossary is the key to them:
 *
 *   w window   d document   n navigator   l location   V version
 *   o    whatever window.sightline was before: the inline stub, its calls in o.q
 *   T    this <script> tag, O(name) its data-name option
 *   K    write key   A collector origin   U batch endpoint   H hash routing on
 *   D    Do-Not-Track / Global Privacy Control on (and honoured)
 *   S    the store   X() true when nothing may be recorded or sent (D, optOut)
 *   N()  now in ms   I() now in ISO-8601   J JSON.stringify   E(type, fn) listens on window
 *   G()  a new UUID
 *   a    anonymous id, Y(id) sets it (store and cookie)   Z() the session id
 *   P    page of the current page view, pc() computes it   R referrer for the next view
 *   M(type, fields) records a message   L() stored message keys   F(hiding) sends
 *   t    send timer   r request in flight, or the backoff timer   b backoff ms
 *   s    visible since (ms; falsy while hidden)   h deepest scroll %
 *   sc() updates h   en() records engagement   hi() the page is hidden or left
 *   k    key of the last URL counted as a page view, pk() the current one
 *   nv() history changed   cl(event) a click   sl the public function / API
 */
((w, d, n, l, V) => {
  let o = w.sightline, T = d.currentScript, O = x => T.getAttribute('data-' + x), K = O('key');
  if (!K || o && o.v) return; // no key, or the tag twice on the page: stop

  let A = O('api') || new URL(T.src).origin, U = A + '/v1/batch', H = O('hash') == 'true',
    D = O('respect-dnt') != 'false' && (n.doNotTrack == 1 || n.globalPrivacyControl),
    N = Date.now, I = () => new Date().toISOString(), J = JSON.stringify,
    E = (x, f) => addEventListener(x, f, !0),
    // every blob: URL ends in a random (v4) UUID; unlike crypto.randomUUID() this works
    // on plain-http pages too (the empty blobs are freed with the page)
    G = () => URL.createObjectURL(new Blob).slice(-36),
    S = {}, a, P, R = d.referrer, t, r, b = 0, s, h, k,
    X = () => D || S.sl_opt,

    // --- identity -------------------------------------------------------------------
    // The anonymous id lives in a first-party cookie (one year, renewed on each load)
    // and in the store, so losing either one alone keeps the visitor.
    Y = x => (S.sl_aid = a = x,
      d.cookie = 'sl_aid=' + x + ';max-age=31536000;path=/;samesite=lax' + (l.protocol > 'https' ? ';secure' : '')),
    // sl_sid = "id.lastEventMs": a new id after 30 minutes without an event
    Z = (x = (S.sl_sid || '').split('.'), y = N()) => (y - x[1] < 18e5 || (x[0] = G()), S.sl_sid = x[0] + '.' + y, x[0]),

    // --- messages and transport -----------------------------------------------------
    // Every message is stored as it is recorded (key "sl_b_<ms><messageId>", one key
    // per message so tabs never overwrite each other's) and deleted only once the
    // collector has taken it: whatever is stored is what is left to send, after a
    // failure, offline, or on the next page load. A resend carries the same messageId,
    // which the collector deduplicates. P stays until the next page view, so events
    // (and the engagement of a page being left) go with the view they belong to.
    M = (type, f, x = G()) => {
      try {
        X() || (S['sl_b_' + N() + x] = J(Object.assign({
          type, messageId: x, timestamp: I(), anonymousId: a, userId: S.sl_uid,
          context: {
            page: P,
            screen: { width: screen.width, height: screen.height, density: devicePixelRatio },
            viewport: { width: innerWidth, height: innerHeight },
            locale: n.language,
            timezone: Intl.DateTimeFormat().resolvedOptions().timeZone,
            library: { name: 'sightline.js', version: V },
            sessionId: Z()
          }
        }, f)));
      } catch (e) {} // storage full: it is dropped rather than break the page
      t = t || setTimeout(F, 1e3);
    },
    L = () => Object.keys(S).filter(x => !x.indexOf('sl_b_')).sort(),

    // F sends up to 40 stored messages, one request at a time, as text/plain (no CORS
    // preflight). While the page lives: fetch keepalive, whose status the queue needs:
    // 2xx is delivered and 4xx never will be (bad key, invalid message, origin not
    // allowed), so both are deleted; 5xx (503 + Retry-After: queue down) and network
    // errors are retried after a backoff of 1 s doubling up to a minute. When the page
    // is hidden or left: sendBeacon, the one request every browser lets outlive the
    // page, but blind to the answer; a refused beacon falls back to fetch keepalive.
    // Offline, during a backoff or with a request in flight, nothing is sent: the
    // messages stay stored for the "online" event, the next send or the next page load.
    // There is no pixel fallback here: every browser that runs this ES2017 code has
    // fetch, and the bytes did not fit; /p.gif serves <noscript> and e-mail.
    F = (i, x = L(), y, z) => {
      clearTimeout(t);
      t = 0;
      while (x[500]) delete S[x.shift()]; // bounded: the oldest go
      y = x.slice(0, 40);
      z = J({ writeKey: K, sentAt: I(), batch: y.map(x => JSON.parse(S[x])) });
      X() || r || !n.onLine || !y[0] || (i == 1 && n.sendBeacon(U, z) ? y.map(x => delete S[x])
        : r = fetch(U, { method: 'POST', body: z, keepalive: !0 }).then(x => {
          if (x.status > 499) throw x;
          y.map(x => delete S[x]);
          F(r = b = 0); // and what was recorded meanwhile
        }).catch(() => r = setTimeout(() => F(r = 0), b = Math.min(2 * b || 1e3, 6e4))));
    },

    // --- engagement -----------------------------------------------------------------
    // Visible time since the last engagement event (hiding twice never counts the same
    // millisecond twice) and the deepest scroll, in percent, of the current page view.
    sc = () => h = Math.max(h, (scrollY + innerHeight) * 100 / d.documentElement.scrollHeight | 0),
    en = (x = s && N() - s) => (s = !d.hidden && N(),
      x && M('engagement', { event: 'engagement', properties: { engaged_ms: x, max_scroll_pct: h } })),
    hi = () => (en(), s = 0, F(1)), // pagehide can come before visibilitychange: stop the clock

    // --- page views -----------------------------------------------------------------
    pk = () => l.pathname + l.search + (H ? l.hash : ''),
    pc = () => P = { url: l.href, path: l.pathname, title: d.title, referrer: R, search: l.search, hash: l.hash },
    page = q => {
      k && P.url != l.href && (R = P.url); // a SPA view's referrer is the view before it
      k = pk();
      pc();
      M('page', { name: q && q.name, properties: q });
    },
    // Load and every history change end here. A URL already counted is not counted
    // again, so state-only replaceState calls, routers that push twice and popstate +
    // hashchange pairs make one page view each.
    nv = () => pk() != k && (k && en(), h = 0, page(), sc()),

    // --- clicks ---------------------------------------------------------------------
    cl = (e, x = e.target, u = x.closest('[data-sl-event]') ||
      O('auto-click') != 'false' && x.closest('a,button,[role=button],[type=submit]'), q) => {
      if (u) {
        q = {
          tag: u.localName,
          text: (u.innerText || u.value || '').trim().slice(0, 100),
          id: u.id,
          classes: u.className,
          selector: u.localName + (u.id ? '#' + u.id : u.classList[0] ? '.' + u.classList[0] : ''),
          // links know their href, host and pathname; other elements have none
          href: u.href,
          outbound: !!u.host && u.host != l.host,
          download: u.hasAttribute('download') || /\.(pdf|zip|exe|dmg|csv|xlsx?|docx?)$/i.test(u.pathname)
        };
        for (x of u.attributes) x.name.indexOf('data-sl-prop-') || (q[x.name.slice(13)] = x.value);
        M('click', { event: u.getAttribute('data-sl-event') || 'click', properties: q });
      }
    },

    // --- API ------------------------------------------------------------------------
    sl = w.sightline = (m, ...x) => sl[m] && sl[m](...x);

  try {
    S = localStorage;
  } catch (e) {} // blocked: a plain object for this page's life
  D || Y((d.cookie.match(/sl_aid=([\w-]+)/) || 0)[1] || S.sl_aid || G()); // no cookie at all under DNT / GPC
  pc();

  Object.assign(sl, {
    v: V,
    track: (event, properties) => M('track', { event, properties }),
    page,
    identify: (id, traits) => (id && (S.sl_uid = '' + id), M('identify', { traits })),
    group: (groupId, traits) => M('group', { groupId, traits }),
    alias: id => M('alias', { userId: id, previousId: S.sl_uid || a }),
    reset: () => Y(G(), delete S.sl_uid, delete S.sl_sid),
    optOut: () => L(S.sl_opt = 1).map(x => delete S[x]),
    optIn: () => delete S.sl_opt
  });

  for (const f of ['pushState', 'replaceState']) {
    const y = history[f];
    history[f] = function () {
      y.apply(this, arguments);
      nv();
    };
  }
  E('popstate', nv);
  E('hashchange', nv); // pk() ignores the hash unless data-hash is on
  E('click', cl);
  E('scroll', sc);
  E('pagehide', hi);
  E('online', () => F(b = 0));
  E('visibilitychange', () => d.hidden ? hi() : s = N());

  for (const x of o && o.q || []) sl(...x);
  s = !d.hidden && N();
  nv(); // its timer also sends what an earlier page could not deliver
})(window, document, navigator, location, '0.1.0');
