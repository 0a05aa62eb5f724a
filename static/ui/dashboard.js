/* Sightline dashboard: plain DOM, no framework. Built into static/ui.min.js (with
 * uPlot before it) by `npm run build:ui`; served at /ui/app.js.
 *
 * Everything comes from /api/v1 with the dashboard session cookie. Data is untrusted
 * (events are whatever clients sent): it only ever goes into text nodes and
 * attributes, never into innerHTML. */
(function () {
  "use strict";

  var TYPES_OF_VIEWS = ["live", "traffic", "people", "deadletters", "products"];
  var MAX_ROWS = 200;
  var BREAKDOWNS = [
    ["page", "Top pages", "Page"],
    ["channel", "Channels", "Channel"],
    ["referrer", "Referrers", "Referrer"],
    ["utm_source", "Sources (UTM)", "utm_source"],
    ["utm_medium", "Media (UTM)", "utm_medium"],
    ["utm_campaign", "Campaigns", "utm_campaign"],
    ["country", "Countries", "Country"],
    ["browser", "Browsers", "Browser"],
    ["os", "Operating systems", "OS"],
    ["device", "Devices", "Device"],
  ];
  var IP_HANDLING = {
    full: "kept whole",
    truncated: "truncated before storage (IPv4: last octet zeroed; IPv6: /48 kept)",
    none: "not kept (looked up for the country, then dropped)",
  };
  var BOT_HANDLING = {
    flag: "stored and flagged as bots (left out of traffic unless asked)",
    drop: "not stored",
  };

  var state = {
    session: null,
    products: [],
    product: "",
    view: null,
    source: null,
    paused: false,
    held: [],
    events: new Map(),
    chart: null,
    chartData: null,
    trafficSource: null,
    trafficTimer: null,
    trafficPoll: null,
    trafficAt: 0,
    opener: null,
  };

  // -- helpers ------------------------------------------------------------------------

  function $(id) {
    return document.getElementById(id);
  }

  function h(tag, attrs) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (name) {
        var value = attrs[name];
        if (value === null || value === undefined || value === false) return;
        if (name.slice(0, 2) === "on") el.addEventListener(name.slice(2), value);
        else if (name === "class") el.className = value;
        else el.setAttribute(name, value === true ? "" : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function append(el, child) {
    if (child === null || child === undefined || child === false) return;
    if (Array.isArray(child)) child.forEach(function (c) { append(el, c); });
    else el.append(child instanceof Node ? child : String(child));
  }

  function fill(el) {
    clear(el);
    for (var i = 1; i < arguments.length; i++) append(el, arguments[i]);
    return el;
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function qs(params) {
    var out = new URLSearchParams();
    Object.keys(params).forEach(function (k) {
      var v = params[k];
      if (v !== null && v !== undefined && v !== "") out.set(k, String(v));
    });
    return out.toString();
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  function when(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return h("time", { datetime: iso, title: iso }, d.toLocaleString());
  }

  function clock(iso) {
    var d = new Date(iso);
    return h("time", { datetime: iso, title: iso }, d.toLocaleTimeString());
  }

  function number(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString();
  }

  function AuthError() {}

  function api(path, method) {
    var init = { credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method) {
      init.method = method;
      init.headers["X-Sightline-CSRF"] = (state.session && state.session.csrf) || "";
    }
    busy(1);
    return fetch(path, init).finally(function () { busy(-1); }).then(function (r) {
      if (r.status === 401) {
        showLogin();
        throw new AuthError();
      }
      var type = r.headers.get("content-type") || "";
      var body = type.indexOf("json") >= 0 ? r.json() : Promise.resolve(null);
      return body.then(function (data) {
        if (!r.ok) throw new Error((data && data.message) || r.status + " " + r.statusText);
        return data;
      });
    });
  }

  var pending = 0;
  function busy(step) {
    // Requests in flight, for whoever waits for the page to settle (the tests).
    pending += step;
    document.body.dataset.pending = String(pending);
  }

  function showError(err) {
    if (err instanceof AuthError) return;
    var el = $("error");
    el.textContent = err && err.message ? err.message : String(err);
    el.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
  }

  function table(caption, heads, rows) {
    return h(
      "div",
      { class: "scroll", tabindex: 0, role: "region", "aria-label": caption },
      h(
        "table",
        null,
        h("caption", null, caption),
        h("thead", null, h("tr", null, heads.map(function (t) { return h("th", { scope: "col" }, t); }))),
        h("tbody", null, rows)
      )
    );
  }

  function selectedProduct() {
    return state.products.find(function (p) { return p.id === state.product; }) || state.products[0];
  }

  function snippetTag(key) {
    return '<script defer src="' + location.origin + '/s.js" data-key="' + key + '"></script>';
  }

  function curlLine(key) {
    return (
      "curl -u " + key + ": " + location.origin + "/v1/track -H 'Content-Type: application/json' " +
      "-d '{\"userId\":\"u1\",\"event\":\"Hello\"}'"
    );
  }

  function copy(text, button) {
    var done = function () {
      var was = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = was; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {});
    } else {
      var area = h("textarea", { class: "sr-only" }, text);
      append(document.body, area);
      area.select();
      try { document.execCommand("copy"); done(); } catch (e) { /* nothing to do */ }
      area.remove();
    }
  }

  // -- start, log in and out ----------------------------------------------------------

  function showLogin() {
    closeLive();
    closeTrafficStream();
    $("nav").hidden = true;
    $("who").hidden = true;
    document.querySelectorAll(".view").forEach(function (v) { v.hidden = true; });
    $("view-login").hidden = false;
  }

  function boot() {
    busy(1); // until the first section has asked for its data
    api("/api/v1/session")
      .then(function (session) {
        state.session = session;
        return api("/api/v1/products");
      })
      .then(function (products) {
        state.products = products;
        var select = clear($("product"));
        if (state.session.admin) select.append(h("option", { value: "" }, "all products"));
        products.forEach(function (p) { select.append(h("option", { value: p.id }, p.name)); });
        state.product = state.session.product_id || (products[0] && products[0].id) || "";
        select.value = state.product;
        $("nav").hidden = false;
        $("who").hidden = false;
        route(false);
      })
      .catch(showError)
      .then(function () { busy(-1); });
  }

  $("product").addEventListener("change", function (e) {
    state.product = e.target.value;
    route(false);
  });

  $("logout").addEventListener("click", function () {
    fetch("/ui/logout", { method: "POST", credentials: "same-origin" }).then(showLogin);
  });

  document.querySelectorAll("button.copy").forEach(function (b) {
    b.addEventListener("click", function () { copy($(b.dataset.copy).textContent, b); });
  });

  // -- views --------------------------------------------------------------------------

  function route(moveFocus) {
    var name = location.hash.slice(1);
    if (TYPES_OF_VIEWS.indexOf(name) < 0) name = "live";
    if (!state.session) return;
    clearError();
    state.view = name;
    document.querySelectorAll(".view").forEach(function (v) { v.hidden = v.id !== "view-" + name; });
    document.querySelectorAll("#nav a").forEach(function (a) {
      if (a.getAttribute("href") === "#" + name) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    if (name !== "live") closeLive();
    if (name !== "traffic") closeTrafficStream();
    else openTrafficStream();
    ({ live: openLive, traffic: loadTraffic, people: loadPeople, deadletters: loadDeadLetters,
       products: loadProducts })[name]();
    if (moveFocus) $("view-" + name).querySelector("h1").focus();
  }

  document.querySelectorAll(".view h1").forEach(function (h1) { h1.setAttribute("tabindex", "-1"); });
  window.addEventListener("hashchange", function () { route(true); });
  document.querySelectorAll("#nav a").forEach(function (a) {
    a.addEventListener("click", function (e) {
      if (a.getAttribute("href") === location.hash) {
        e.preventDefault(); // no hashchange: reload the section and move focus to it
        route(true);
      }
    });
  });

  // -- live ---------------------------------------------------------------------------

  function closeLive() {
    if (state.source) state.source.close();
    state.source = null;
  }

  function openLive() {
    closeLive();
    var type = $("live-type").value;
    var source = new EventSource("/api/v1/live?" + qs({ product: state.product, type: type }));
    state.source = source;
    source.addEventListener("open", function () {
      liveStatus("Live: new events appear as they are stored.");
    });
    source.addEventListener("event", function (m) {
      var ev = JSON.parse(m.data);
      if (state.paused) {
        state.held.push(ev);
        liveStatus(state.held.length + " new while paused.");
      } else addEvent(ev, true);
    });
    source.addEventListener("reset", loadRecent);
    source.addEventListener("error", function () {
      liveStatus("Disconnected: reconnecting…");
    });
    loadRecent();
    updateEmpty();
  }

  function liveStatus(text) {
    $("live-status").textContent = text;
  }

  function loadRecent() {
    var type = $("live-type").value;
    return api("/api/v1/events?" + qs({ product: state.product, type: type, limit: 50 }))
      .then(function (page) {
        var body = $("live-table").tBodies[0];
        var fresh = Array.from(state.events.values()).filter(function (e) { return e._fresh; });
        clear(body);
        state.events.clear();
        page.events.slice().reverse().forEach(function (ev) { addEvent(ev, false); });
        fresh.forEach(function (ev) { addEvent(ev, true); });
        updateEmpty();
      })
      .catch(showError);
  }

  function addEvent(ev, fresh) {
    if (state.events.has(ev.id)) return;
    ev._fresh = fresh;
    state.events.set(ev.id, ev);
    var body = $("live-table").tBodies[0];
    var row = eventRow(ev);
    if (fresh) row.className = "fresh";
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) {
      var last = body.rows[body.rows.length - 1];
      state.events.delete(last.dataset.id);
      last.remove();
    }
    updateEmpty();
  }

  function eventRow(ev) {
    var ctx = ev.context || {};
    var props = ev.properties || {};
    var page = ev.page_path || (ctx.page && (ctx.page.path || ctx.page.url)) || props.path || props.url || "";
    var who = ev.user_id || ev.anonymous_id || "";
    var open = h(
      "button",
      { type: "button", class: "linkish", onclick: function () { openEvent(ev.id, open); } },
      ev.name || ev.type
    );
    return h(
      "tr",
      { "data-id": ev.id },
      h("td", null, clock(ev.timestamp)),
      h("td", null, h("span", { class: "tag tag-" + ev.type }, ev.type), ev.is_bot ? " bot" : ""),
      h("td", null, open),
      h("td", { class: "wrap" }, who),
      h("td", { class: "wrap" }, page)
    );
  }

  function updateEmpty() {
    var product = selectedProduct();
    var empty = state.events.size === 0;
    $("empty").hidden = !empty;
    if (empty && product) {
      $("empty-tag").textContent = snippetTag(product.write_keys[0]);
      $("empty-curl").textContent = curlLine(product.write_keys[0]);
    }
  }

  function openEvent(id, opener) {
    state.opener = opener;
    api("/api/v1/events/" + encodeURIComponent(id))
      .then(function (detail) {
        var ev = detail.event;
        var ctx = {};
        Object.keys(ev.context || {}).forEach(function (k) {
          if (!(k in detail.enrichment)) ctx[k] = ev.context[k];
        });
        var record = {};
        Object.keys(ev).forEach(function (k) {
          if (k !== "context" && k !== "properties") record[k] = ev[k];
        });
        $("event-title").textContent = (ev.name || ev.type) + " (" + ev.type + ")";
        fill($("event-body"), 
          h("h3", null, "Canonical record"),
          h("dl", { class: "fields" }, Object.keys(record).map(function (k) {
            var v = record[k];
            return [h("dt", null, k), h("dd", null, v === null ? "–" : String(v))];
          })),
          h("h3", null, "Properties"),
          h("pre", { tabindex: 0 }, json(ev.properties || {})),
          h("h3", null, "Context (as sent)"),
          h("pre", { tabindex: 0 }, json(ctx)),
          h("h3", null, "Enrichment (added by the worker)"),
          h("pre", { tabindex: 0 }, json(detail.enrichment)),
          h("h3", null, "Envelope"),
          detail.envelope === null || detail.envelope === undefined
            ? h("p", { class: "note" }, detail.envelope_note)
            : h("pre", { tabindex: 0 }, json(detail.envelope))
        );
        $("event-detail").hidden = false;
        $("event-title").focus();
      })
      .catch(showError);
  }

  $("event-close").addEventListener("click", function () {
    $("event-detail").hidden = true;
    if (state.opener && state.opener.isConnected) state.opener.focus();
  });

  $("live-type").addEventListener("change", openLive);

  $("live-pause").addEventListener("click", function (e) {
    state.paused = !state.paused;
    e.target.setAttribute("aria-pressed", String(state.paused));
    e.target.textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) {
      state.held.forEach(function (ev) { addEvent(ev, true); });
      state.held = [];
      liveStatus("Live: new events appear as they are stored.");
    }
  });

  // -- traffic ------------------------------------------------------------------------

  var DAY = 86400000;

  function trafficRange() {
    var range = $("traffic-range").value;
    if (range === "custom") {
      var from = $("traffic-from").value;
      var to = $("traffic-to").value;
      if (!from || !to) throw new Error("choose both dates of the custom range");
      return {
        from: from + "T00:00:00Z",
        to: new Date(new Date(to + "T00:00:00Z").getTime() + DAY).toISOString(),
      };
    }
    if (range === "1") {
      // Up to the next minute: an event sent a moment ago is in the range.
      var end = Math.ceil((Date.now() + 1) / 60000) * 60000;
      return { from: new Date(end - DAY).toISOString(), to: new Date(end).toISOString() };
    }
    // Whole UTC days, today's included: what the stats' daily rollups answer.
    var tomorrow = (Math.floor(Date.now() / DAY) + 1) * DAY;
    return {
      from: new Date(tomorrow - Number(range) * DAY).toISOString(),
      to: new Date(tomorrow).toISOString(),
    };
  }

  $("traffic-range").addEventListener("change", function (e) {
    var range = e.target.value;
    $("traffic-custom").hidden = range !== "custom";
    if (range !== "custom") {
      $("traffic-interval").value = range === "1" ? "hour" : range === "90" ? "week" : "day";
      loadTraffic();
    }
  });
  $("traffic-interval").addEventListener("change", function () { loadTraffic(); });
  $("traffic-bots").addEventListener("change", function () { loadTraffic(); });
  $("traffic-form").addEventListener("submit", function (e) {
    e.preventDefault();
    loadTraffic();
  });

  function loadTraffic() {
    var range;
    try {
      range = trafficRange();
    } catch (err) {
      showError(err);
      return Promise.resolve();
    }
    var params = {
      product: state.product,
      from: range.from,
      to: range.to,
      interval: $("traffic-interval").value,
      breakdown: BREAKDOWNS.map(function (b) { return b[0]; }).join(","),
      bots: $("traffic-bots").checked ? "include" : "",
      limit: 10,
    };
    state.trafficAt = Date.now();
    $("view-traffic").setAttribute("aria-busy", "true");
    return api("/api/v1/stats?" + qs(params))
      .then(function (stats) {
        clearError();
        renderTotals(stats.totals);
        renderChart(stats);
        renderBreakdowns(stats.breakdowns);
      })
      .catch(showError)
      .then(function () { $("view-traffic").removeAttribute("aria-busy"); });
  }

  // While the traffic view is shown in a visible tab, its stats are asked again when the
  // live stream says events were stored (at most every REFRESH_MS), and every POLL_MS
  // anyway (a stream that dropped, a day that turned): new traffic shows without a reload.
  var REFRESH_MS = 5000;
  var POLL_MS = 60000;

  function openTrafficStream() {
    closeTrafficStream();
    if (document.hidden) return;
    var source = new EventSource("/api/v1/live?" + qs({ product: state.product }));
    state.trafficSource = source;
    source.addEventListener("event", scheduleTraffic);
    source.addEventListener("reset", scheduleTraffic);
    // What was stored between the stats' load and the stream's start is in no message:
    // ask again once the stream is open.
    source.addEventListener("open", scheduleTraffic);
    state.trafficPoll = setInterval(scheduleTraffic, POLL_MS);
  }

  function closeTrafficStream() {
    if (state.trafficSource) state.trafficSource.close();
    clearInterval(state.trafficPoll);
    clearTimeout(state.trafficTimer);
    state.trafficSource = state.trafficPoll = state.trafficTimer = null;
  }

  function scheduleTraffic() {
    if (state.trafficTimer) return; // one refresh pending at a time
    var wait = Math.max(0, state.trafficAt + REFRESH_MS - Date.now());
    state.trafficTimer = setTimeout(function () {
      state.trafficTimer = null;
      if (state.view === "traffic" && !document.hidden) loadTraffic();
    }, wait);
  }

  document.addEventListener("visibilitychange", function () {
    if (state.view !== "traffic" || !state.session) return;
    if (document.hidden) {
      closeTrafficStream();
    } else {
      loadTraffic();
      openTrafficStream();
    }
  });

  function renderTotals(t) {
    var rate = t.bounce_rate === null ? "–" : Math.round(t.bounce_rate * 100) + " %";
    var cards = [
      ["Page views", number(t.pageviews)],
      ["Visitors", number(t.visitors)],
      ["Users", number(t.users)],
      ["Sessions", number(t.sessions)],
      ["Bounce rate", rate],
      ["Events", number(t.events)],
    ];
    fill($("totals"), 
      h("dl", null, cards.map(function (c) {
        return h("div", { class: "card" }, h("dt", null, c[0]), h("dd", null, c[1]));
      }))
    );
  }

  function renderChart(stats) {
    var xs = [], views = [], visitors = [];
    var body = clear($("series-table").tBodies[0]);
    stats.series.forEach(function (p) {
      xs.push(new Date(p.start).getTime() / 1000);
      views.push(p.pageviews);
      visitors.push(p.visitors);
      body.append(h("tr", null, h("td", null, when(p.start)), h("td", null, number(p.pageviews)),
        h("td", null, number(p.visitors)), h("td", null, number(p.sessions)),
        h("td", null, number(p.events))));
    });
    state.chartData = [xs, views, visitors];
    $("chart-caption").textContent =
      "Page views and visitors per " + stats.interval + ": " + number(stats.totals.pageviews) +
      " page views, " + number(stats.totals.visitors) + " visitors in the range.";
    var holder = $("chart");
    var width = Math.max(240, holder.clientWidth || 600);
    if (state.chart) state.chart.destroy();
    clear(holder);
    if (typeof uPlot === "undefined") return;
    state.chart = new uPlot(
      {
        width: width,
        height: width < 500 ? 200 : 260,
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true } },
        series: [
          {},
          { label: "Page views", stroke: "#2563eb", fill: "rgba(37,99,235,0.12)", width: 2 },
          { label: "Visitors", stroke: "#c026d3", width: 2 },
        ],
        axes: [{ stroke: "#888" }, { stroke: "#888", size: 44 }],
      },
      state.chartData,
      holder
    );
  }

  if (typeof ResizeObserver !== "undefined") {
    new ResizeObserver(function () {
      var holder = $("chart");
      if (state.chart && holder.clientWidth > 0) {
        state.chart.setSize({ width: holder.clientWidth, height: holder.clientWidth < 500 ? 200 : 260 });
      }
    }).observe($("chart"));
  }

  function renderBreakdowns(breakdowns) {
    var byName = {};
    breakdowns.forEach(function (b) { byName[b.by] = b.rows; });
    fill($("breakdowns"), 
      BREAKDOWNS.map(function (b) {
        var rows = (byName[b[0]] || []).filter(function (r) {
          return !(b[0] === "page" && r.value === null); // events that are not page views
        });
        var top = rows.reduce(function (m, r) { return Math.max(m, r.visitors, r.pageviews); }, 0) || 1;
        var body = rows.length
          ? rows.map(function (r) {
              var bar = h("span", { class: "bar" });
              bar.style.width = Math.round((100 * Math.max(r.visitors, r.pageviews)) / top) + "%";
              return h("tr", null,
                h("th", { scope: "row", class: "wrap" }, bar, r.value === null ? "(none)" : r.value),
                h("td", null, number(r.visitors)),
                h("td", null, number(r.pageviews)));
            })
          : [h("tr", null, h("td", { colspan: 3, class: "note" }, "nothing in this range"))];
        var section = h("section", { class: "breakdown", id: "breakdown-" + b[0] });
        section.append(table(b[1], [b[2], "Visitors", "Page views"], body));
        return section;
      })
    );
  }

  // -- people -------------------------------------------------------------------------

  $("people-form").addEventListener("submit", function (e) {
    e.preventDefault();
    loadPeople();
  });
  $("people-kind").addEventListener("change", function () { loadPeople(); });
  $("profile-close").addEventListener("click", function () {
    $("profile").hidden = true;
    if (state.opener && state.opener.isConnected) state.opener.focus();
  });

  function needProduct(where) {
    if (state.product) return false;
    clear(where).append(h("p", { class: "note" }, "Choose a product above."));
    return true;
  }

  function loadPeople() {
    var kind = $("people-kind").value;
    var t = $("people-table");
    if (needProduct(t.tBodies[0])) return Promise.resolve();
    var params = qs({ product: state.product, q: $("people-q").value, limit: 50 });
    return api("/api/v1/" + kind + "?" + params)
      .then(function (page) {
        var heads = kind === "users"
          ? ["User", "Email", "Aliases", "Last seen", "Events"]
          : ["Account", "Name", "Parent", "Updated"];
        clear(t.tHead).append(h("tr", null, heads.map(function (x) { return h("th", { scope: "col" }, x); })));
        var body = clear(t.tBodies[0]);
        var items = page[kind];
        if (!items.length) {
          body.append(h("tr", null, h("td", { colspan: heads.length, class: "note" },
            kind === "users" ? "No users yet: identify calls create them." :
              "No accounts yet: group calls create them.")));
        }
        items.forEach(function (item) {
          var b = h("button", { type: "button", class: "linkish" }, item.id);
          if (kind === "users") {
            b.addEventListener("click", function () { openUser(item.id, b); });
            body.append(h("tr", null, h("td", { class: "wrap" }, b), h("td", { class: "wrap" }, item.email || ""),
              h("td", null, number(item.aliases.length)), h("td", null, when(item.last_seen)),
              h("td", null, number(item.event_count))));
          } else {
            b.addEventListener("click", function () { openAccount(item.id, b); });
            body.append(h("tr", null, h("td", { class: "wrap" }, b), h("td", { class: "wrap" }, item.name || ""),
              h("td", { class: "wrap" }, item.parent_id || ""), h("td", null, when(item.updated_at))));
          }
        });
      })
      .catch(showError);
  }

  function showProfile(title, content, opener) {
    if (opener) state.opener = opener;
    $("profile-title").textContent = title;
    fill($("profile-body"), content);
    $("profile").hidden = false;
    $("profile-title").focus();
  }

  function accountButton(account, current) {
    var label = account.name ? account.name + " (" + account.id + ")" : account.id;
    if (current) return h("strong", { "aria-current": "true" }, label);
    var b = h("button", { type: "button", class: "linkish" }, label);
    b.addEventListener("click", function () { openAccount(account.id, null); });
    return b;
  }

  function userButton(id) {
    var b = h("button", { type: "button", class: "linkish" }, id);
    b.addEventListener("click", function () { openUser(id, null); });
    return b;
  }

  function lastEvents(list) {
    return table("Newest events", ["Time", "Type", "Event"], list.map(function (ev) {
      var open = h("button", { type: "button", class: "linkish", onclick: function () {
        location.hash = "#live"; // the event opens beside the live list
        openEvent(ev.id, null);
      } }, ev.name || ev.type);
      return h("tr", null, h("td", null, when(ev.timestamp)), h("td", null, ev.type),
        h("td", { class: "wrap" }, open));
    }));
  }

  function traits(obj) {
    var keys = Object.keys(obj || {});
    if (!keys.length) return h("p", { class: "note" }, "none");
    return h("dl", { class: "fields" }, keys.map(function (k) {
      var v = obj[k];
      return [h("dt", null, k), h("dd", null, typeof v === "object" ? JSON.stringify(v) : String(v))];
    }));
  }

  function openUser(id, opener) {
    var q = qs({ product: state.product });
    api("/api/v1/users/" + encodeURIComponent(id) + "?" + q)
      .then(function (profile) {
        var u = profile.user;
        var chain = profile.accounts.slice().reverse();
        var accountTree = chain.length
          ? nest(chain.map(function (a) { return accountButton(a, false); }))
          : h("p", { class: "note" }, "in no account");
        showProfile("User " + u.id, [
          h("h3", null, "Identity"),
          h("p", { class: "note" }, "Every id below is one person: events sent with any of them are this user's."),
          h("ul", { class: "tree" }, h("li", null, h("strong", null, u.id), " (user id)",
            u.aliases.length
              ? h("ul", null, u.aliases.map(function (a) {
                  return h("li", null, h("code", null, a.alias), " (" + a.kind + ")");
                }))
              : null)),
          h("dl", { class: "fields" },
            h("dt", null, "email"), h("dd", null, u.email || "–"),
            h("dt", null, "first seen"), h("dd", null, when(u.first_seen) || "–"),
            h("dt", null, "last seen"), h("dd", null, when(u.last_seen) || "–"),
            h("dt", null, "events"), h("dd", null, number(u.event_count))),
          h("h3", null, "Traits"),
          traits(u.attributes),
          h("h3", null, "Account (and its parents)"),
          accountTree,
          lastEvents(profile.last_events),
        ], opener);
      })
      .catch(showError);
  }

  function nest(items) {
    // [root, child, grandchild...] as nested lists.
    var root = h("ul", { class: "tree" });
    var at = root;
    items.forEach(function (item, i) {
      var li = h("li", null, item);
      at.append(li);
      if (i < items.length - 1) {
        var next = h("ul");
        li.append(next);
        at = next;
      }
    });
    return root;
  }

  function openAccount(id, opener) {
    var q = qs({ product: state.product });
    api("/api/v1/accounts/" + encodeURIComponent(id) + "?" + q)
      .then(function (profile) {
        var a = profile.account;
        var parents = profile.parents.slice().reverse();
        var tree = nest(parents.map(function (p) { return accountButton(p, false); }).concat([
          [accountButton(a, true),
            profile.children.length
              ? h("ul", null, profile.children.map(function (c) { return h("li", null, accountButton(c, false)); }))
              : null],
        ]));
        showProfile("Account " + (a.name || a.id), [
          h("h3", null, "Account tree"),
          tree,
          h("h3", null, "Traits"),
          traits(a.traits),
          h("h3", null, "Users"),
          profile.users.length
            ? h("ul", { class: "plain" }, profile.users.map(function (u) { return h("li", null, userButton(u)); }))
            : h("p", { class: "note" }, "none"),
          lastEvents(profile.last_events),
        ], opener);
      })
      .catch(showError);
  }

  // -- dead letters -------------------------------------------------------------------

  $("dl-all").addEventListener("change", function () { loadDeadLetters(); });
  $("dl-replay-all").addEventListener("click", function () {
    replay("/api/v1/deadletters/replay");
  });

  function loadDeadLetters() {
    var admin = state.session.admin;
    $("dl-replay-all").disabled = !admin;
    var params = qs({ product: state.product, all: $("dl-all").checked ? "true" : "", limit: 100 });
    return api("/api/v1/deadletters?" + params)
      .then(function (page) {
        var body = clear($("dl-table").tBodies[0]);
        if (!page.dead_letters.length) {
          body.append(h("tr", null, h("td", { colspan: 5, class: "note" }, "No dead letters.")));
        }
        page.dead_letters.forEach(function (d) {
          var action = d.replayed_at
            ? h("span", null, "replayed ", when(d.replayed_at))
            : h("button", {
                type: "button",
                disabled: !admin,
                title: admin ? null : "replaying needs an admin token",
                "aria-label": "Replay dead letter " + d.id,
                onclick: function () { replay("/api/v1/deadletters/" + d.id + "/replay"); },
              }, "Replay");
          body.append(h("tr", { "data-id": d.id },
            h("td", null, when(d.created_at)),
            h("td", null, h("code", null, d.reason)),
            h("td", { class: "wrap wide" }, d.detail),
            h("td", { class: "wrap" }, h("details", null, h("summary", null, "Show"),
              h("pre", { tabindex: 0 }, json(d.envelope)))),
            h("td", null, action)));
        });
      })
      .catch(showError);
  }

  function replay(path) {
    api(path, "POST")
      .then(function (answer) {
        var n = answer.replayed;
        $("dl-status").textContent =
          n === 1 ? "1 dead letter sent back to the workers." : n + " dead letters sent back to the workers.";
        return loadDeadLetters();
      })
      .then(function () { $("dl-title").focus(); })
      .catch(showError);
  }

  // -- products -----------------------------------------------------------------------

  function loadProducts() {
    var list = clear($("products-list"));
    var admin = state.session.admin;
    state.products.forEach(function (p) {
      var secret = h("dd", { id: "server-" + p.id }, admin ? "hidden" : "an admin token can reveal it");
      var reveal = null;
      if (admin) {
        reveal = h("button", { type: "button", "aria-expanded": "false", "aria-controls": "server-" + p.id },
          "Reveal server key");
        reveal.addEventListener("click", function () {
          if (reveal.getAttribute("aria-expanded") === "true") {
            secret.textContent = "hidden";
            reveal.setAttribute("aria-expanded", "false");
            reveal.textContent = "Reveal server key";
            return;
          }
          api("/api/v1/products/" + encodeURIComponent(p.id) + "/keys")
            .then(function (keys) {
              fill(secret, keys.server_keys.map(function (k) { return h("code", { class: "key" }, k); }));
              reveal.setAttribute("aria-expanded", "true");
              reveal.textContent = "Hide server key";
            })
            .catch(showError);
        });
      }
      var key = p.write_keys[0];
      var tagId = "tag-" + p.id;
      list.append(h("section", { class: "product", "aria-labelledby": "p-" + p.id },
        h("h2", { id: "p-" + p.id }, p.name, p.is_enabled ? "" : " (disabled)"),
        h("dl", { class: "fields" },
          h("dt", null, "id"), h("dd", null, h("code", null, p.id)),
          h("dt", null, "write key (public, for pages)"),
          h("dd", null, p.write_keys.map(function (k) { return h("code", { class: "key" }, k); })),
          h("dt", null, "server key (secret, for servers)"), secret,
          h("dt", null, "allowed origins"),
          h("dd", null, p.allowed_origins.length
            ? h("ul", { class: "plain" }, p.allowed_origins.map(function (o) { return h("li", null, h("code", null, o)); }))
            : "any origin (none listed)"),
          h("dt", null, "IP addresses"),
          h("dd", null, h("code", null, p.ip_handling), ": " + (IP_HANDLING[p.ip_handling] || "")),
          h("dt", null, "bots"),
          h("dd", null, h("code", null, p.bot_handling), ": " + (BOT_HANDLING[p.bot_handling] || ""))),
        reveal,
        h("h3", null, "Paste into every page"),
        h("div", { class: "copyable" }, h("pre", null, h("code", { id: tagId }, snippetTag(key))),
          h("button", { type: "button", class: "copy", onclick: function (e) { copy(snippetTag(key), e.target); } },
            "Copy tag"))
      ));
    });
    if (!state.products.length) list.append(h("p", { class: "note" }, "No products: sightline products create NAME."));
    return Promise.resolve();
  }

  boot();
})();
