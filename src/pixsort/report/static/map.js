// pixsort map: every point of window.PIXSORT_MAP on a 2-D canvas (no network, no libraries).
// Dots are written straight into an ImageData buffer; thumbnails come from atlas images
// when zoomed in; a uniform grid answers hover, click and box selection at any n.
(function () {
  "use strict";
  var D = window.PIXSORT_MAP, n = D.n;
  var X = Float32Array.from(D.x), Y = Float32Array.from(D.y);
  D.x = D.y = null;
  var fields = D.fields, byName = {};
  fields.forEach(function (f) { byName[f.name] = f; });
  var canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
  var tip = document.getElementById("tip"), panel = document.getElementById("panel");
  var detail = document.getElementById("detail"), countEl = document.getElementById("count");
  document.getElementById("title").textContent = D.title;
  document.title = D.title;

  // -- state ------------------------------------------------------------------------------
  var W = 1, H = 1, scale = 1, ox = 0, oy = 0, image = null, buf = null;
  var shown = new Uint8Array(n).fill(1), selected = new Uint8Array(n), nSelected = 0, nShown = n;
  var colour32 = new Uint32Array(n), colourCss = [], pointCss = new Array(n);
  var filters = {}, hover = -1, focus = -1, box = null, lasso = null, pending = false;
  var thumbUnit = Math.min(0.05, Math.max(0.003, 1.1 / Math.sqrt(Math.max(n, 1))));
  var THUMB_MIN_PX = 10, THUMB_MAX_PX = 72, THUMB_MAX_POINTS = 3000;
  var stats = { drawn: 0, shown: n, frames: 0, frameMs: [], firstDrawAt: null, mode: "dots", selected: 0 };

  // -- colours -------------------------------------------------------------------------------
  var PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
    "#c7c7c7", "#dbdb8d", "#9edae5"];
  function categoryCss(i, name) {
    if (name === "-1" || name === "noise" || name === "") return "#b4b4b4";
    if (i < PALETTE.length) return PALETTE[i];
    return "hsl(" + ((i * 137.508) % 360).toFixed(1) + ",60%,48%)";
  }
  function cssTo32(css) {
    var c = document.createElement("canvas").getContext("2d");
    c.fillStyle = css; c.fillRect(0, 0, 1, 1);
    var p = c.getImageData(0, 0, 1, 1).data;
    return (255 << 24 | p[2] << 16 | p[1] << 8 | p[0]) >>> 0;
  }
  function setColour(name) {
    var f = byName[name];
    if (!f) { colour32.fill(cssTo32("#3465a4")); pointCss.fill("#3465a4"); return; }
    colourCss = f.categories.map(function (c, i) { return categoryCss(i, c); });
    var c32 = colourCss.map(cssTo32);
    for (var i = 0; i < n; i++) { colour32[i] = c32[f.codes[i]]; pointCss[i] = colourCss[f.codes[i]]; }
  }

  // -- spatial grid ------------------------------------------------------------------------------
  var G = Math.max(1, Math.ceil(Math.sqrt(n / 6))), cellStart = new Int32Array(G * G + 1), cellItems = new Int32Array(n);
  function cellOf(v) { var c = Math.floor(v * G); return c < 0 ? 0 : c >= G ? G - 1 : c; }
  (function buildGrid() {
    var cell = new Int32Array(n), i;
    for (i = 0; i < n; i++) { cell[i] = cellOf(X[i]) + G * cellOf(Y[i]); cellStart[cell[i] + 1]++; }
    for (i = 0; i < G * G; i++) cellStart[i + 1] += cellStart[i];
    var fill = cellStart.slice(0, G * G);
    for (i = 0; i < n; i++) cellItems[fill[cell[i]]++] = i;
  })();
  // calls fn(i) for every point whose cell touches the data box [x0,x1] x [y0,y1]
  function eachInBox(x0, y0, x1, y1, fn) {
    var cx0 = cellOf(x0), cx1 = cellOf(x1), cy0 = cellOf(y0), cy1 = cellOf(y1);
    for (var cy = cy0; cy <= cy1; cy++) for (var cx = cx0; cx <= cx1; cx++) {
      var c = cx + G * cy;
      for (var k = cellStart[c], e = cellStart[c + 1]; k < e; k++) fn(cellItems[k]);
    }
  }

  // -- view ------------------------------------------------------------------------------------
  function sx(i) { return X[i] * scale + ox; }
  function sy(i) { return (1 - Y[i]) * scale + oy; }
  function dataX(px) { return (px - ox) / scale; }
  function dataY(py) { return 1 - (py - oy) / scale; }
  function resize() {
    var r = canvas.getBoundingClientRect();
    W = Math.max(1, Math.round(r.width)); H = Math.max(1, Math.round(r.height));
    canvas.width = W; canvas.height = H;
    image = ctx.createImageData(W, H); buf = new Uint32Array(image.data.buffer);
  }
  function fit() {
    var xmax = 0, ymax = 0;
    for (var i = 0; i < n; i++) { if (X[i] > xmax) xmax = X[i]; if (Y[i] > ymax) ymax = Y[i]; }
    xmax = xmax || 1; ymax = ymax || 1;
    var pad = Math.min(48, W / 6, H / 6);  // room for the thumbnails of the outermost points
    scale = Math.min((W - 2 * pad) / xmax, (H - 2 * pad) / ymax);
    ox = (W - xmax * scale) / 2; oy = (H - ymax * scale) / 2 - (1 - ymax) * scale;
  }
  function requestDraw() { if (!pending) { pending = true; requestAnimationFrame(draw); } }

  // -- atlases (loaded on first use) -------------------------------------------------------------
  var atlas = D.atlas, atlasImg = [];
  function atlasFor(i) {
    var a = Math.floor(i / (atlas.per_row * atlas.per_row));
    if (!atlasImg[a]) {
      var img = new Image(), slot = { ready: false, source: img };
      img.onload = function () {
        // a decoded bitmap draws many times faster than the <img> on a software canvas
        var done = function (bitmap) {
          slot.source = bitmap || img; slot.ready = true; requestDraw(); if (focus >= 0) showPanel(focus);
        };
        if (window.createImageBitmap) createImageBitmap(img).then(done, function () { done(null); });
        else done(null);
      };
      img.src = atlas.urls[a];
      atlasImg[a] = slot;
    }
    return atlasImg[a];
  }
  function drawThumb(c, i, x, y, size) {
    var slot = atlasFor(i);
    if (!slot.ready) return false;
    var j = i % (atlas.per_row * atlas.per_row), t = atlas.tile;
    c.drawImage(slot.source, (j % atlas.per_row) * t, Math.floor(j / atlas.per_row) * t, t, t, x, y, size, size);
    return true;
  }

  // -- drawing -----------------------------------------------------------------------------------
  function draw() {
    pending = false;
    var t0 = performance.now(), drawn = 0;
    var x0 = dataX(0), x1 = dataX(W), y0 = dataY(H), y1 = dataY(0);
    var size = Math.round(thumbSize()), inView = [];
    eachInBox(x0, y0, x1, y1, function (i) {
      if (shown[i] && X[i] >= x0 && X[i] <= x1 && Y[i] >= y0 && Y[i] <= y1) inView.push(i);
    });
    var thumbs = atlas && size >= THUMB_MIN_PX && inView.length <= THUMB_MAX_POINTS;
    stats.mode = thumbs ? "thumbnails" : "dots";
    if (thumbs) {
      ctx.fillStyle = "#fafbfd"; ctx.fillRect(0, 0, W, H);
      ctx.imageSmoothingEnabled = false;  // nearest scaling: sharp tiles, and cheaper on a software canvas
      var half = size / 2, frame = size >= 18 ? 2 : 1;
      ctx.lineWidth = frame;
      for (var k = 0; k < inView.length; k++) {
        var i = inView[k], px = Math.round(sx(i) - half), py = Math.round(sy(i) - half);
        if (!drawThumb(ctx, i, px, py, size)) { ctx.fillStyle = "#ddd"; ctx.fillRect(px, py, size, size); }
        ctx.strokeStyle = selected[i] ? "#000" : pointCss[i];
        ctx.strokeRect(px - frame / 2, py - frame / 2, size + frame, size + frame);
        drawn++;
      }
    } else {
      buf.fill(0xfffdfbfa);
      var r = scale > 2500 ? 2 : 1, black = 0xff000000;
      for (var m = 0; m < inView.length; m++) {
        var q = inView[m], cx = (sx(q) + 0.5) | 0, cy = (sy(q) + 0.5) | 0, col = selected[q] ? black : colour32[q];
        var rr = selected[q] ? r + 1 : r;
        for (var dy = -rr + 1; dy <= rr; dy++) {
          var yy = cy + dy;
          if (yy < 0 || yy >= H) continue;
          var row = yy * W;
          for (var dx = -rr + 1; dx <= rr; dx++) { var xx = cx + dx; if (xx >= 0 && xx < W) buf[row + xx] = col; }
        }
        drawn++;
      }
      ctx.putImageData(image, 0, 0);
    }
    ring(focus, "#d00", 3);
    if (focus >= 0 && D.neighbours) neighboursOf(focus).forEach(function (j) { ring(j, "#e08a00", 2); });
    ring(hover, "#000", 2);
    if (box) {
      ctx.strokeStyle = "#3465a4"; ctx.setLineDash([5, 3]); ctx.lineWidth = 1;
      ctx.strokeRect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0); ctx.setLineDash([]);
    }
    if (lasso && lasso.length > 1) {
      ctx.strokeStyle = "#3465a4"; ctx.setLineDash([5, 3]); ctx.lineWidth = 1; ctx.beginPath();
      ctx.moveTo(lasso[0][0], lasso[0][1]);
      for (var li = 1; li < lasso.length; li++) ctx.lineTo(lasso[li][0], lasso[li][1]);
      ctx.closePath(); ctx.stroke(); ctx.setLineDash([]);
    }
    stats.drawn = drawn; stats.frames++;
    stats.frameMs.push(performance.now() - t0);
    if (stats.frameMs.length > 500) stats.frameMs.shift();
    if (stats.firstDrawAt === null) stats.firstDrawAt = performance.now();
  }
  function thumbSize() { return Math.min(thumbUnit * scale, THUMB_MAX_PX); }
  function ring(i, colour, width) {
    if (i < 0 || !shown[i]) return;
    var size = Math.max(8, stats.mode === "thumbnails" ? thumbSize() + 4 : 8);
    ctx.strokeStyle = colour; ctx.lineWidth = width;
    ctx.strokeRect(sx(i) - size / 2, sy(i) - size / 2, size, size);
  }

  // -- picking -----------------------------------------------------------------------------------
  function pick(px, py) {
    var radius = Math.max(6, stats.mode === "thumbnails" ? thumbSize() / 2 + 2 : 6) / scale;
    var x = dataX(px), y = dataY(py), best = -1, bestD = radius * radius;
    eachInBox(x - radius, y - radius, x + radius, y + radius, function (i) {
      if (!shown[i]) return;
      var ddx = X[i] - x, ddy = Y[i] - y, d = ddx * ddx + ddy * ddy;
      if (d <= bestD) { bestD = d; best = i; }
    });
    return best;
  }
  function valueOf(f, i) {
    if (f.kind === "category") return f.categories[f.codes[i]];
    var v = f.values[i];
    return v === null || v === undefined ? "" : String(v);
  }
  function baseName(p) { var s = p.split(/[\\/]/); return s[s.length - 1]; }
  function fieldRows(table, i) {
    fields.forEach(function (f) {
      var tr = table.insertRow(), a = tr.insertCell(), b = tr.insertCell();
      a.textContent = f.name; b.textContent = valueOf(f, i);
    });
  }
  function showTip(i, px, py) {
    if (i < 0) { tip.style.display = "none"; return; }
    tip.textContent = "";
    var b = document.createElement("b"); b.textContent = baseName(D.paths[i]); b.dataset.testid = "tooltip-file";
    tip.appendChild(b);
    var t = document.createElement("table"); fieldRows(t, i); tip.appendChild(t);
    tip.style.display = "block";
    var r = canvas.getBoundingClientRect(), left = r.left + px + 14, top = r.top + py + 14;
    if (left + tip.offsetWidth > window.innerWidth) left = r.left + px - tip.offsetWidth - 10;
    if (top + tip.offsetHeight > window.innerHeight) top = r.top + py - tip.offsetHeight - 10;
    tip.style.left = left + "px"; tip.style.top = top + "px";
  }
  function neighboursOf(i) {
    var k = D.neighbours.k, out = [];
    for (var j = 0; j < k; j++) { var v = D.neighbours.index[i * k + j]; if (v >= 0) out.push(v); }
    return out;
  }
  function thumbCanvas(i, side) {
    var c = document.createElement("canvas");
    c.width = c.height = side;
    var g = c.getContext("2d");
    g.imageSmoothingEnabled = false;
    g.fillStyle = pointCss[i]; g.fillRect(0, 0, side, side);
    if (atlas) drawThumb(g, i, 2, 2, side - 4);
    return c;
  }
  function showPanel(i) {
    focus = i;
    detail.textContent = "";
    panel.style.display = i < 0 ? "none" : "block";
    if (i < 0) { requestDraw(); return; }
    detail.appendChild(thumbCanvas(i, 132));
    var p = document.createElement("div"); p.className = "path"; p.textContent = D.paths[i]; p.dataset.testid = "panel-path";
    detail.appendChild(p);
    var link = D.links && D.links[i];
    if (link) {
      var a = document.createElement("a"); a.href = link; a.target = "_blank"; a.rel = "noopener";
      a.textContent = "open the image"; a.dataset.testid = "open-image"; detail.appendChild(a);
    }
    var t = document.createElement("table"); fieldRows(t, i); detail.appendChild(t);
    if (D.neighbours) {
      var h = document.createElement("div"); h.textContent = "nearest neighbours"; detail.appendChild(h);
      neighboursOf(i).forEach(function (j) {
        var c = thumbCanvas(j, 52); c.className = "nb"; c.title = D.paths[j]; c.dataset.testid = "neighbour";
        c.dataset.index = j;
        c.addEventListener("click", function () { centreOn(j); showPanel(j); });
        detail.appendChild(c);
      });
    }
    requestDraw();
  }
  function centreOn(i) { ox = W / 2 - X[i] * scale; oy = H / 2 - (1 - Y[i]) * scale; }

  // -- filters and selection -------------------------------------------------------------------------
  function applyFilters() {
    var active = Object.keys(filters).filter(function (k) { return filters[k] >= 0; });
    nShown = 0;
    for (var i = 0; i < n; i++) {
      var ok = 1;
      for (var a = 0; a < active.length; a++) if (byName[active[a]].codes[i] !== filters[active[a]]) { ok = 0; break; }
      shown[i] = ok; nShown += ok;
    }
    stats.shown = nShown; updateCount(); requestDraw();
  }
  function updateCount() {
    countEl.textContent = nShown + " of " + n + " shown" + (nSelected ? ", " + nSelected + " selected" : "");
    stats.selected = nSelected;
    document.getElementById("export").disabled = !nSelected;
    document.getElementById("clear").disabled = !nSelected;
  }
  function selectBox(b) {
    var xa = dataX(Math.min(b.x0, b.x1)), xb = dataX(Math.max(b.x0, b.x1));
    var ya = dataY(Math.max(b.y0, b.y1)), yb = dataY(Math.min(b.y0, b.y1));
    eachInBox(xa, ya, xb, yb, function (i) {
      if (shown[i] && !selected[i] && X[i] >= xa && X[i] <= xb && Y[i] >= ya && Y[i] <= yb) { selected[i] = 1; nSelected++; }
    });
    updateCount();
  }
  // selects the shown points inside the polygon pts ([[x, y], ...] in canvas pixels)
  function selectLasso(pts) {
    if (pts.length < 3) return;
    var xs = pts.map(function (p) { return p[0]; }), ys = pts.map(function (p) { return p[1]; });
    var xa = dataX(Math.min.apply(null, xs)), xb = dataX(Math.max.apply(null, xs));
    var ya = dataY(Math.max.apply(null, ys)), yb = dataY(Math.min.apply(null, ys));
    eachInBox(xa, ya, xb, yb, function (i) {
      if (!shown[i] || selected[i]) return;
      var px = sx(i), py = sy(i), inside = false;
      for (var a = 0, b = pts.length - 1; a < pts.length; b = a++) {
        var ya1 = pts[a][1], yb1 = pts[b][1];
        if ((ya1 > py) !== (yb1 > py) && px < (pts[b][0] - pts[a][0]) * (py - ya1) / (yb1 - ya1) + pts[a][0]) inside = !inside;
      }
      if (inside) { selected[i] = 1; nSelected++; }
    });
    updateCount();
  }
  function cell(v) {
    var s = String(v);
    if (D.formula_prefixes.some(function (p) { return s.indexOf(p) === 0; }) && !(s.trim() !== "" && isFinite(Number(s)))) s = "'" + s;
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function selectionCsv() {
    var lines = [["path"].concat(fields.map(function (f) { return f.name; })).map(cell).join(",")];
    for (var i = 0; i < n; i++) if (selected[i]) {
      lines.push([D.paths[i]].concat(fields.map(function (f) { return valueOf(f, i); })).map(cell).join(","));
    }
    return lines.join("\r\n") + "\r\n";
  }
  function exportCsv() {
    var url = URL.createObjectURL(new Blob([selectionCsv()], { type: "text/csv" }));
    var a = document.createElement("a"); a.href = url; a.download = "selection.csv";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 1000);
  }

  // -- controls --------------------------------------------------------------------------------------
  var filterBox = document.getElementById("filters"), colourSel = document.getElementById("colour");
  var toolSel = document.getElementById("tool");
  fields.forEach(function (f) {
    if (f.kind !== "category") return;
    var counts = new Array(f.categories.length).fill(0);
    for (var i = 0; i < n; i++) counts[f.codes[i]]++;
    var s = document.createElement("select");
    s.dataset.testid = "filter-" + f.name; s.dataset.field = f.name;
    s.add(new Option("all " + f.name, "-1"));
    f.categories.forEach(function (c, j) { s.add(new Option(f.name + ": " + (c === "" ? "(none)" : c) + " (" + counts[j] + ")", String(j))); });
    s.addEventListener("change", function () { filters[f.name] = Number(s.value); applyFilters(); });
    filterBox.appendChild(s);
    colourSel.add(new Option(f.name, f.name, false, f.name === D.colour_by));
  });
  colourSel.addEventListener("change", function () { setColour(colourSel.value); requestDraw(); });
  document.getElementById("export").addEventListener("click", exportCsv);
  document.getElementById("clear").addEventListener("click", function () { selected.fill(0); nSelected = 0; updateCount(); requestDraw(); });
  document.getElementById("close").addEventListener("click", function () { showPanel(-1); });

  var drag = null;
  function local(e) { var r = canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; }
  canvas.addEventListener("mousedown", function (e) {
    var p = local(e);
    drag = { x: p[0], y: p[1], ox: ox, oy: oy, moved: false, box: e.shiftKey && toolSel.value === "box",
      lasso: e.shiftKey && toolSel.value === "lasso" };
    if (drag.box) box = { x0: p[0], y0: p[1], x1: p[0], y1: p[1] };
    else if (drag.lasso) lasso = [p];
    else canvas.classList.add("dragging");
  });
  window.addEventListener("mousemove", function (e) {
    var p = local(e);
    if (drag) {
      if (Math.abs(p[0] - drag.x) + Math.abs(p[1] - drag.y) > 3) drag.moved = true;
      if (drag.box) { box.x1 = p[0]; box.y1 = p[1]; }
      else if (drag.lasso) lasso.push(p);
      else { ox = drag.ox + p[0] - drag.x; oy = drag.oy + p[1] - drag.y; }
      tip.style.display = "none"; requestDraw(); return;
    }
    if (e.target !== canvas) return;
    var i = pick(p[0], p[1]);
    if (i !== hover) { hover = i; requestDraw(); }
    showTip(i, p[0], p[1]);
  });
  window.addEventListener("mouseup", function (e) {
    if (!drag) return;
    var p = local(e), d = drag;
    drag = null; canvas.classList.remove("dragging");
    if (d.box) { if (d.moved) selectBox(box); box = null; requestDraw(); return; }
    if (d.lasso) { if (d.moved) selectLasso(lasso); lasso = null; requestDraw(); return; }
    if (!d.moved && e.target === canvas) showPanel(pick(p[0], p[1]));
  });
  canvas.addEventListener("mouseleave", function () { hover = -1; tip.style.display = "none"; requestDraw(); });
  canvas.addEventListener("wheel", function (e) {
    e.preventDefault();
    var p = local(e);
    zoom(Math.exp(-e.deltaY * 0.0015), p[0], p[1]);
  }, { passive: false });
  function zoom(f, px, py) {
    var next = Math.min(Math.max(scale * f, 50), 2e6);
    f = next / scale; ox = px - (px - ox) * f; oy = py - (py - oy) * f; scale = next; requestDraw();
  }
  window.addEventListener("resize", function () { resize(); requestDraw(); });

  // -- start ------------------------------------------------------------------------------------------
  resize(); fit(); setColour(D.colour_by); updateCount(); draw();
  window.pixsortMap = {
    stats: stats,
    n: n,
    // the page position of point i (for tests and scripts)
    screenOf: function (i) { var r = canvas.getBoundingClientRect(); return { x: r.left + sx(i), y: r.top + sy(i) }; },
    setFilter: function (name, category) {
      var s = document.querySelector('select[data-field="' + name + '"]'), f = byName[name];
      s.value = String(category === null ? -1 : f.categories.indexOf(String(category)));
      s.dispatchEvent(new Event("change"));
    },
    pan: function (dx, dy) { ox += dx; oy += dy; draw(); return stats.frameMs[stats.frameMs.length - 1]; },
    zoom: function (f) { zoom(f, W / 2, H / 2); draw(); },
    select: function (x0, y0, x1, y1) { selectBox({ x0: x0, y0: y0, x1: x1, y1: y1 }); requestDraw(); return nSelected; },
    lasso: function (pts) { selectLasso(pts); requestDraw(); return nSelected; },
    selectionCsv: selectionCsv,
    pick: pick,
    centreOn: function (i) { centreOn(i); draw(); },
    fit: function () { fit(); draw(); },
    showPanel: showPanel
  };
})();
