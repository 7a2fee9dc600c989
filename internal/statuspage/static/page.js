// The status page, live: follows /events (server-sent events) and redraws each section
// from the view it sends. Data only ever reaches the page through textContent and
// setAttribute: no innerHTML, no framework.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  // h makes an element: h("td", {class: "num"}, "3") or h("svg:rect", {width: 4}).
  function h(tag, attrs, children) {
    var el = tag.indexOf("svg:") === 0 ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) {
          el.setAttribute(k, String(attrs[k]));
        }
      });
    }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined || c === "") {
        return;
      }
      el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return el;
  }

  function replace(id, nodes) {
    var el = document.getElementById(id);
    if (el) {
      el.replaceChildren.apply(el, nodes);
    }
  }

  function setText(id, text) {
    var el = document.getElementById(id);
    if (el) {
      el.textContent = text || "";
    }
  }

  function bar(m) {
    return h("svg:svg", {class: "bar" + (m.high ? " high" : ""), viewBox: "0 0 100 6", preserveAspectRatio: "none", role: "img", "aria-label": m.label}, [
      h("svg:rect", {class: "track", width: 100, height: 6}),
      m.known ? h("svg:rect", {class: "fill", width: m.percent, height: 6}) : null
    ]);
  }

  function spark(s) {
    return h("svg:svg", {class: "spark", viewBox: "0 0 " + s.width + " " + s.height, preserveAspectRatio: "none", role: "img", "aria-label": s.label}, [
      h("svg:line", {class: "base", x1: 0, y1: s.height, x2: s.width, y2: s.height}),
      s.points ? h("svg:polyline", {points: s.points, "vector-effect": "non-scaling-stroke"}) : null
    ]);
  }

  function meter(m) {
    return h("div", {class: "meter"}, [h("span", {class: "meter-text"}, [m.text]), m.known ? bar(m) : null]);
  }

  function metric(name, m, s) {
    return h("div", {class: "metric"}, [
      h("div", {class: "metric-head"}, [h("span", {class: "metric-name"}, [name]), h("span", {class: "metric-value"}, [m.text])]),
      bar(m), spark(s)
    ]);
  }

  function pairs(cls, list) {
    var dl = h("dl", {class: cls});
    list.forEach(function (p) {
      dl.appendChild(h("dt", null, [p[0]]));
      dl.appendChild(h("dd", p[2] ? {class: p[2]} : null, [p[1]]));
    });
    return dl;
  }

  function tile(d) {
    var kids = [h("div", {class: "tile-head"}, [h("h3", null, [d.name]), h("span", {class: "state"}, [d.stateLabel])])];
    if (d.model) {
      kids.push(h("p", {class: "model"}, [d.model]));
    }
    if (d.holder) {
      var hv = d.holder;
      var rows = [["User", hv.user, "user"], ["Container", hv.container, "container"], ["Allocation", hv.allocation]];
      if (hv.type) { rows.push(["Type", hv.type]); }
      if (hv.since) { rows.push(["Held for", hv.since]); }
      kids.push(pairs("holder", rows));
      hv.marks.forEach(function (m) { kids.push(h("p", {class: "mark"}, [m])); });
    }
    if (d.facts.length) {
      kids.push(pairs("facts", d.facts.map(function (f) { return [f.label, f.value, f.warn ? "warn" : null]; })));
    }
    if (d.kind !== "mig-parent") {
      kids.push(metric("Utilisation", d.util, d.utilSpark));
      kids.push(metric("Memory", d.memory, d.memSpark));
    }
    if (d.sensors) {
      kids.push(h("p", {class: "sensors"}, [d.sensors]));
    }
    return h("li", {class: "tile kind-" + d.kind + " state-" + d.state}, kids);
  }

  function cells(values, numeric) {
    return values.map(function (v, i) { return h("td", numeric && numeric.indexOf(i) >= 0 ? {class: "num"} : null, [v]); });
  }

  function emptyRow(span, text) {
    return h("tr", null, [h("td", {colspan: span, class: "empty"}, [text])]);
  }

  function day(d) {
    var items = d.bookings.map(function (b) {
      return h("li", {class: "booking" + (b.active ? " active" : ""), title: b.summary}, [
        h("span", {class: "btime"}, [b.time]), " ",
        h("span", {class: "bname"}, [b.name]), " ",
        h("span", {class: "bfor"}, [b.for + " · " + b.what]),
        b.active ? h("span", {class: "now"}, ["On now"]) : null,
        b.weekly ? h("span", {class: "weekly"}, ["weekly"]) : null
      ]);
    });
    if (!items.length) {
      items.push(h("li", {class: "none"}, ["No bookings"]));
    }
    return h("li", {class: "day" + (d.today ? " today" : "")}, [
      h("h3", null, [h("time", {datetime: d.iso}, [d.label]), d.today ? " " : null, d.today ? h("span", {class: "today-mark"}, ["today"]) : null]),
      h("ul", null, items)
    ]);
  }

  function draw(v) {
    setText("title", v.title);
    document.title = v.title + " · gpuwarden";
    setText("summary", v.summary);
    var upd = document.getElementById("updated");
    if (upd) {
      upd.textContent = v.updated;
      upd.setAttribute("datetime", v.updatedISO);
    }
    replace("notices", v.notices.map(function (n) { return h("p", {class: "notice"}, [n]); }));

    var tiles = v.devices.map(tile);
    if (!tiles.length) {
      tiles.push(h("li", {class: "empty"}, [v.filter ? "No GPUs held by a user matching “" + v.filter + "”." : "No GPUs."]));
    }
    replace("devices", tiles);

    var q = v.queue.map(function (r) {
      return h("tr", null, cells([r.place, r.name, r.user, r.request, r.waiting, r.estimatedStart, r.latestStart, r.why], [0]));
    });
    replace("queue-body", q.length ? q : [emptyRow(8, "Nobody is waiting.")]);
    setText("unplaced", v.unplaced);

    replace("week", v.days.map(day));

    var u = v.users.map(function (r) {
      return h("tr", null, [h("th", {scope: "row"}, [r.name]), h("td", null, [meter(r.quota)])]
        .concat(cells([r.containers, r.borrowed, r.waiting], [0, 1, 2]))
        .concat([h("td", null, [meter(r.budget)])]));
    });
    replace("users-body", u.length ? u : [emptyRow(6, "Nobody holds or waits for a GPU.")]);

    var us = v.usage;
    setText("usage-period", (us.period ? "From the audit log, " + us.period : "") + (us.updated ? "; computed " + us.updated : ""));
    setText("usage-note", us.note);
    var ur = us.rows.map(function (r) {
      return h("tr", null, [h("th", {scope: "row"}, [r.user]), h("td", null, [meter(r.bar)])]
        .concat(cells([r.used, r.usedShare, r.idle, r.stops, r.rejected, r.binds, r.meanWait], [0, 1, 2, 3, 4, 5, 6])));
    });
    replace("usage-body", ur.length ? ur : [emptyRow(9, "No GPU use recorded.")]);
    var ar = us.advice.map(function (a) {
      return h("tr", null, [h("th", {scope: "row"}, [a.user])].concat(cells([a.containerType, a.suggestion, a.runs, a.freed, a.text], [2, 3])));
    });
    replace("advice-body", ar.length ? ar : [emptyRow(6, "No run would have fit a smaller choice.")]);
  }

  function live(text, state) {
    var el = document.getElementById("live");
    if (el) {
      el.textContent = text;
      el.className = "live " + state;
    }
  }

  function start() {
    if (!window.EventSource) {
      live("Not live (this browser has no EventSource): reload to update", "off");
      return;
    }
    var user = new URLSearchParams(window.location.search).get("user") || "";
    var src = new EventSource("/events" + (user ? "?user=" + encodeURIComponent(user.slice(0, 64)) : ""));
    live("Connecting…", "wait");
    src.addEventListener("open", function () { live("Live", "on"); });
    src.addEventListener("error", function () {
      if (src.readyState !== EventSource.CLOSED) {
        live("Reconnecting…", "wait");
        return;
      }
      // The server refused the stream (too many open, or it is stopping): the browser
      // gives up on its own, so try again a little later.
      live("Not live: trying again in 30 s", "off");
      window.setTimeout(start, 30000);
    });
    src.addEventListener("status", function (e) {
      var v;
      try {
        v = JSON.parse(e.data);
      } catch (err) {
        live("Could not read an update", "off");
        return;
      }
      draw(v);
      live("Live", "on");
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
