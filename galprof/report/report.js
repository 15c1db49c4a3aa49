// galprof report: renders the embedded profile. Everything is local; no network, no libraries.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("galprof-data").textContent);
  var thumbs = JSON.parse(document.getElementById("galprof-thumbs").textContent);

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function $(id) { return document.getElementById(id); }
  function src(t) { return "data:image/jpeg;base64," + thumbs[t]; }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function selectOnly(container, row) {
    var rows = container.querySelectorAll(".selected");
    for (var i = 0; i < rows.length; i++) rows[i].classList.remove("selected");
    if (row) row.classList.add("selected");
  }

  // A bar row: label | track with fill (or stacked parts) | value
  function barRow(label, value, max, attrs, parts, shown) {
    var row = el("div", "bar");
    row.setAttribute("role", "button");
    row.tabIndex = 0;
    Object.keys(attrs || {}).forEach(function (k) { row.setAttribute(k, attrs[k]); });
    var lab = el("div", "label", label);
    lab.title = label;
    var track = el("div", "track");
    var pct = max > 0 ? (100 * value / max) : 0;
    if (parts) {
      var stack = el("div", "stack");
      stack.style.width = pct + "%";
      parts.forEach(function (p) {
        if (!p.value) return;
        var seg = el("div", p.cls);
        seg.style.width = (100 * p.value / value) + "%";
        seg.title = p.title + ": " + p.value;
        stack.appendChild(seg);
      });
      track.appendChild(stack);
    } else {
      var fill = el("div", "fill");
      fill.style.width = pct + "%";
      track.appendChild(fill);
    }
    row.appendChild(lab);
    row.appendChild(track);
    row.appendChild(el("div", "value", shown === undefined ? value : shown));
    return row;
  }

  function onActivate(row, fn) {
    row.addEventListener("click", fn);
    row.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); fn(); }
    });
  }

  // Thumbnails of one list of media, with the count of those not embedded.
  function showMedia(box, title, items, total) {
    box.hidden = false;
    box.textContent = "";
    box.appendChild(el("h3", null, title));
    var grid = el("div", "thumbs");
    items.forEach(function (i) {
      var m = data.media[i];  // [name, thumb index or -1, kind, path]
      var fig = el("figure", "thumb" + (m[2] === "video" ? " video" : ""));
      fig.setAttribute("data-name", m[0]);
      fig.title = m[3];
      if (m[2] === "document") {
        fig.appendChild(el("div", "missing document", "document: not shown"));
      } else if (m[1] >= 0) {
        var img = el("img");
        img.src = src(m[1]);
        img.alt = m[0];
        img.loading = "lazy";
        fig.appendChild(img);
      } else {
        fig.appendChild(el("div", "missing", "no preview"));
      }
      fig.appendChild(el("figcaption", null, m[0]));
      grid.appendChild(fig);
    });
    var more = total - items.length;
    if (more > 0) grid.appendChild(el("div", "more", "+" + more + " more"));
    if (!items.length && more <= 0) grid.appendChild(el("div", "empty", "No media."));
    box.appendChild(grid);
    return box;
  }

  function hide() {
    for (var i = 0; i < arguments.length; i++) { var b = $(arguments[i]); b.hidden = true; b.textContent = ""; }
  }

  // --- header
  (function facts() {
    var g = data.facts;
    var parts = [plural(g.photos || 0, "photo"), plural(g.videos || 0, "video")];
    if (g.failed) parts.push(g.failed + " unreadable");
    if (g.documents) parts.push(plural(g.documents, "document"));
    if (g.screenshots) parts.push(plural(g.screenshots, "screenshot"));
    if (g.generated_at) parts.push("profile of " + g.generated_at.slice(0, 10));
    $("facts").textContent = parts.join(" · ");
    $("footer").textContent = "Made by galprof on this device. This page contains small previews of your photos: share it with care.";
  })();

  // --- interests: groups -> categories -> media
  (function interests() {
    var box = $("groups");
    if (!data.groups.length) { box.appendChild(el("div", "empty", "No categories yet.")); return; }
    var max = Math.max.apply(null, data.groups.map(function (g) { return g.media; }));
    data.groups.forEach(function (g) {
      var shown = typeof g.share === "number" ? g.media + " · " + Math.round(100 * g.share) + "%" : g.media;
      var row = barRow(g.name, g.media, max, {"data-group": g.name}, null, shown);
      onActivate(row, function () { selectOnly(box, row); showGroup(g); });
      box.appendChild(row);
    });
  })();

  function showGroup(g) {
    hide("category-media");
    var box = $("group-detail");
    box.hidden = false;
    box.textContent = "";
    box.appendChild(el("h3", null, g.name + ": " + plural(g.media, "item")));
    var bars = el("div", "bars");
    bars.id = "subcats";
    var max = Math.max.apply(null, g.subs.map(function (s) { return s.media; }).concat([1]));
    g.subs.forEach(function (s) {
      var row = barRow(s.name, s.media, max, {"data-category": s.name});
      onActivate(row, function () {
        selectOnly(bars, row);
        showMedia($("category-media"), s.name, s.items, s.total);
      });
      bars.appendChild(row);
    });
    if (!g.subs.length) bars.appendChild(el("div", "empty", "No categories."));
    box.appendChild(bars);
  }

  // --- locations
  (function locations() {
    var box = $("places");
    if (!data.places.length) { box.appendChild(el("div", "empty", "No geotagged photos.")); return; }
    var max = Math.max.apply(null, data.places.map(function (p) { return p.media; }));
    data.places.forEach(function (p) {
      var row = barRow(p.label, p.media, max, {"data-place": p.label});
      var when = p.first ? (p.first === p.last ? p.first : p.first + " – " + p.last) : "";
      row.firstChild.title = p.label + (p.admin1 ? " (" + p.admin1 + ")" : "") + (when ? ", " + when : "");
      onActivate(row, function () {
        selectOnly(box, row);
        showMedia($("place-media"), p.label + (when ? " · " + when : ""), p.items, p.total);
      });
      box.appendChild(row);
    });
  })();

  // --- documents and screenshots: kinds -> file names (never their pictures)
  (function documents() {
    var box = $("document-kinds");
    if (!data.documents.length) { box.appendChild(el("div", "empty", "No documents or screenshots.")); return; }
    var max = Math.max.apply(null, data.documents.map(function (d) { return d.media; }));
    data.documents.forEach(function (d) {
      var row = barRow(d.label, d.media, max, {"data-kind": d.label});
      onActivate(row, function () {
        selectOnly(box, row);
        showMedia($("document-media"), d.label, d.items, d.total);
      });
      box.appendChild(row);
    });
  })();

  // --- demography: age bins (stacked male/female) -> people -> media
  (function demography() {
    var box = $("demo-bins");
    if (!data.bins.length) { box.appendChild(el("div", "empty", "No people yet.")); return; }
    var max = Math.max.apply(null, data.bins.map(function (b) { return b.male + b.female; }).concat([1]));
    data.bins.forEach(function (b) {
      var row = barRow(b.label, b.male + b.female, max, {"data-bin": b.label},
        [{cls: "m", value: b.male, title: "male"}, {cls: "f", value: b.female, title: "female"}]);
      onActivate(row, function () { selectOnly(box, row); showBin(b); });
      box.appendChild(row);
    });
  })();

  function showBin(b) {
    hide("bin-media");
    var box = $("bin-people");
    box.hidden = false;
    box.textContent = "";
    box.appendChild(el("h3", null, "Age " + b.label));
    var list = el("div", "people");
    var who = data.people.filter(function (p) { return p.bin === b.label; });
    who.forEach(function (p) {
      list.appendChild(personCard(p, function (card) {
        selectOnly(list, card);
        showMedia($("bin-media"), p.label, p.items, p.total);
      }));
    });
    if (!who.length) list.appendChild(el("div", "empty", "Nobody with a known face in this group."));
    box.appendChild(list);
  }

  function personCard(p, onPick) {
    var card = el("div", "person" + (p.owner ? " owner" : ""));
    card.setAttribute("data-person", p.id);
    card.setAttribute("role", "button");
    card.tabIndex = 0;
    if (p.face >= 0) {
      var img = el("img");
      img.src = src(p.face);
      img.alt = p.label;
      card.appendChild(img);
    } else {
      card.appendChild(el("div", "noface"));
    }
    card.appendChild(el("div", "name", p.label));
    var bits = [];
    if (p.gender) bits.push(p.gender === "F" ? "female" : "male");
    if (p.age !== null) bits.push("about " + p.age);
    card.appendChild(el("div", "meta", bits.join(", ")));
    card.appendChild(el("div", "meta", plural(p.photos, "photo") + (p.videos ? ", " + plural(p.videos, "video") : "")));
    if (p.role) card.appendChild(el("span", "badge" + (p.owner ? " owner" : ""), p.owner ? "you (owner)" : p.role));
    onActivate(card, function () { onPick(card); });
    return card;
  }

  // --- people
  (function people() {
    var list = $("people-list");
    if (!data.people.length) { list.appendChild(el("div", "empty", "No recurring faces.")); return; }
    data.people.forEach(function (p) {
      list.appendChild(personCard(p, function (card) {
        selectOnly(list, card);
        showMedia($("person-media"), p.label, p.items, p.total);
      }));
    });
  })();
})();
