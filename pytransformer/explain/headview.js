/* pytransformer explain: the interactive head view.
 *
 * Finds every <div class="pt-headview"> holding a
 * <script type="application/json" class="pt-hv-data"> with
 *   {"kinds": {kind: {"title", "rows": [tokens], "cols": [tokens],
 *                     "weights": [layer][head][row][col], "layer_names": [..]}}}
 * and draws: controls (kind, layer, head or the mean of all heads), the query
 * words (rows) on the left and the attended words (cols) on the right joined
 * by lines whose opacity is the attention weight, and the chosen head's heat
 * map. Hovering a word shows only its lines. Tokens are only ever written as
 * text nodes (never parsed as HTML). No network, no dependencies.
 * Several copies of this script on one page are harmless.
 */
(function () {
  'use strict';
  if (window.ptHeadView) { window.ptHeadView.initAll(); return; }

  var SVGNS = 'http://www.w3.org/2000/svg';
  var HEAD_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b',
                     '#e377c2', '#17becf', '#7f7f7f', '#bcbd22', '#393b79', '#637939'];
  var MEAN_COLOR = '#333333';
  var WORD_H = 22, CELL = 18, FONT = 13;

  function node(tag, attrs, parent, text) {
    var e = tag.charAt(0) === '!' ? document.createElementNS(SVGNS, tag.slice(1))
                                  : document.createElement(tag);
    for (var k in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    }
    if (text !== undefined) e.appendChild(document.createTextNode(text));
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(x) { return (Math.round(x * 1000) / 1000).toFixed(3); }
  function textWidth(s) { return String(s).length * FONT * 0.6; }

  function HeadView(root) {
    this.root = root;
    var src = root.querySelector('script.pt-hv-data');
    this.data = JSON.parse(src.textContent);
    this.kinds = Object.keys(this.data.kinds);
    var init = this.data.initial || {};
    this.state = {kind: init.kind || this.kinds[0], layer: init.layer || 0,
                  head: init.head === undefined ? 'all' : init.head};
    this.build();
    this.render();
  }

  HeadView.prototype.build = function () {
    var self = this, c = node('div', {'class': 'pt-hv-controls'}, this.root);
    function control(label, cls) {
      var l = node('label', {}, c, label + ' ');
      return node('select', {'class': cls}, l);
    }
    this.kindSel = control('Attention', 'pt-hv-kind');
    this.kinds.forEach(function (k) {
      node('option', {value: k}, self.kindSel, self.data.kinds[k].title || k);
    });
    this.layerSel = control('Layer', 'pt-hv-layer');
    this.headSel = control('Head', 'pt-hv-head');
    this.kindSel.addEventListener('change', function () {
      self.state.kind = self.kindSel.value; self.render();
    });
    this.layerSel.addEventListener('change', function () {
      self.state.layer = parseInt(self.layerSel.value, 10); self.render();
    });
    this.headSel.addEventListener('change', function () {
      var v = self.headSel.value;
      self.state.head = v === 'all' ? 'all' : parseInt(v, 10);
      self.render();
    });
    this.status = node('div', {'class': 'pt-hv-status', 'aria-live': 'polite'}, this.root);
    var panes = node('div', {'class': 'pt-hv-panes'}, this.root);
    this.linesBox = node('div', {'class': 'pt-hv-lines'}, panes);
    this.mapBox = node('div', {'class': 'pt-hv-map'}, panes);
  };

  HeadView.prototype.matrix = function () {
    var k = this.data.kinds[this.state.kind], heads = k.weights[this.state.layer];
    if (this.state.head !== 'all') return heads[this.state.head];
    var R = k.rows.length, C = k.cols.length, m = [], i, j, h;
    for (i = 0; i < R; i++) {
      m.push([]);
      for (j = 0; j < C; j++) {
        var s = 0;
        for (h = 0; h < heads.length; h++) s += heads[h][i][j];
        m[i].push(s / heads.length);
      }
    }
    return m;
  };

  HeadView.prototype.fillSelect = function (sel, values, labels, current) {
    while (sel.firstChild) sel.removeChild(sel.firstChild);
    for (var i = 0; i < values.length; i++) {
      node('option', {value: String(values[i])}, sel, labels[i]);
    }
    sel.value = String(current);
  };

  HeadView.prototype.render = function () {
    var st = this.state, k = this.data.kinds[st.kind];
    var nl = k.weights.length;
    if (st.layer >= nl) st.layer = nl - 1;
    var nh = k.weights[st.layer].length;
    if (st.head !== 'all' && st.head >= nh) st.head = 'all';
    var names = k.layer_names || k.weights.map(function (_, i) { return String(i); });
    this.kindSel.value = st.kind;
    this.fillSelect(this.layerSel, names.map(function (_, i) { return i; }), names, st.layer);
    var hv = ['all'], hl = ['all heads (mean)'];
    for (var h = 0; h < nh; h++) { hv.push(h); hl.push('head ' + h); }
    this.fillSelect(this.headSel, hv, hl, st.head);
    var color = st.head === 'all' ? MEAN_COLOR : HEAD_COLORS[st.head % HEAD_COLORS.length];
    var m = this.matrix();
    this.status.textContent = (k.title || st.kind) + ', layer ' + names[st.layer] + ', ' +
      (st.head === 'all' ? 'mean of ' + nh + ' heads' : 'head ' + st.head + ' of ' + nh) +
      '. Left: the word that attends (query); right: the words it attends to (keys). ' +
      'Hover a word to see only its lines.';
    this.root.setAttribute('data-state', st.kind + '/' + st.layer + '/' + st.head);
    this.drawLines(k, m, color);
    this.drawMap(k, m, color);
  };

  HeadView.prototype.drawLines = function (k, m, color) {
    var self = this, R = k.rows.length, C = k.cols.length;
    var wl = Math.max.apply(null, k.rows.map(textWidth)) + 8;
    var wr = Math.max.apply(null, k.cols.map(textWidth)) + 8;
    var gap = 150, top = 10;
    var W = wl + gap + wr, H = top + Math.max(R, C) * WORD_H + 6;
    while (this.linesBox.firstChild) this.linesBox.removeChild(this.linesBox.firstChild);
    var svg = node('!svg', {width: W, height: H, viewBox: '0 0 ' + W + ' ' + H,
                            'font-size': FONT, 'class': 'pt-hv-svg', role: 'img'}, this.linesBox);
    var g = node('!g', {'class': 'pt-hv-linegroup'}, svg);
    this.lines = [];
    for (var i = 0; i < R; i++) {
      for (var j = 0; j < C; j++) {
        var w = m[i][j];
        var ln = node('!line', {x1: wl, y1: top + (i + 0.5) * WORD_H, x2: wl + gap,
                                y2: top + (j + 0.5) * WORD_H, stroke: color, 'stroke-width': 2.5,
                                'stroke-opacity': fmt(w), 'data-i': i, 'data-j': j,
                                'class': 'pt-hv-line'}, g);
        node('!title', {}, ln, k.rows[i] + ' \u2192 ' + k.cols[j] + ': ' + fmt(w));
        this.lines.push({el: ln, i: i, j: j, w: w});
      }
    }
    this.words = [];
    function word(side, idx, tok) {
      var x = side === 'row' ? wl - 6 : wl + gap + 6;
      var t = node('!text', {x: x, y: top + (idx + 0.5) * WORD_H, 'dominant-baseline': 'central',
                             'text-anchor': side === 'row' ? 'end' : 'start',
                             'class': 'pt-hv-word', 'data-side': side, 'data-index': idx},
                   svg, tok);
      t.setAttribute('tabindex', '0');          // keyboard: Tab to a word shows its lines too
      t.addEventListener('mouseenter', function () { self.focus(side, idx); });
      t.addEventListener('mouseleave', function () { self.focus(null, -1); });
      t.addEventListener('focus', function () { self.focus(side, idx); });
      t.addEventListener('blur', function () { self.focus(null, -1); });
      self.words.push({el: t, side: side, idx: idx});
    }
    k.rows.forEach(function (tok, i) { word('row', i, tok); });
    k.cols.forEach(function (tok, j) { word('col', j, tok); });
  };

  HeadView.prototype.focus = function (side, idx) {
    this.lines.forEach(function (l) {
      var on = side === null || (side === 'row' ? l.i === idx : l.j === idx);
      l.el.setAttribute('stroke-opacity', on ? fmt(l.w) : '0');
    });
    this.words.forEach(function (w) {
      var active = w.side === side && w.idx === idx;
      if (active) w.el.classList.add('pt-active'); else w.el.classList.remove('pt-active');
    });
    (this.cells || []).forEach(function (c) {
      var on = side === null || (side === 'row' ? c.i === idx : c.j === idx);
      c.el.setAttribute('opacity', on ? '1' : '0.2');
    });
    this.root.setAttribute('data-focus', side === null ? '' : side + ':' + idx);
  };

  HeadView.prototype.drawMap = function (k, m, color) {
    var R = k.rows.length, C = k.cols.length;
    var left = Math.max.apply(null, k.rows.map(textWidth)) * 0.85 + 8;
    var top = Math.max.apply(null, k.cols.map(textWidth)) * 0.85 * 0.72 + 12;
    var LEGEND = 34;
    var W = Math.max(left + C * CELL + 40, left + 190), H = top + R * CELL + 8 + LEGEND;
    while (this.mapBox.firstChild) this.mapBox.removeChild(this.mapBox.firstChild);
    var svg = node('!svg', {width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, 'font-size': 11,
                            'class': 'pt-hv-heatmap', role: 'img'}, this.mapBox);
    k.cols.forEach(function (tok, j) {
      var x = left + (j + 0.5) * CELL, y = top - 5;
      node('!text', {x: x, y: y, transform: 'rotate(-45 ' + x + ' ' + y + ')'}, svg, tok);
    });
    k.rows.forEach(function (tok, i) {
      node('!text', {x: left - 5, y: top + (i + 0.5) * CELL, 'text-anchor': 'end',
                     'dominant-baseline': 'central'}, svg, tok);
    });
    this.cells = [];
    for (var i = 0; i < R; i++) {
      for (var j = 0; j < C; j++) {
        var g = node('!g', {'class': 'pt-hv-cell'}, svg);
        node('!rect', {x: left + j * CELL, y: top + i * CELL, width: CELL, height: CELL,
                       fill: '#ffffff', stroke: '#eeeeee', 'stroke-width': 0.5}, g);
        var r = node('!rect', {x: left + j * CELL, y: top + i * CELL, width: CELL, height: CELL,
                               fill: color, 'fill-opacity': fmt(m[i][j]),
                               'data-i': i, 'data-j': j}, g);
        node('!title', {}, r, k.rows[i] + ' \u2192 ' + k.cols[j] + ': ' + fmt(m[i][j]));
        this.cells.push({el: g, i: i, j: j});
      }
    }
    this.drawLegend(svg, left, top + R * CELL + 14, color);
  };

  /* The scale of the map and of the lines: the chosen head's colour (the
   * mean of the heads is grey), opacity = attention weight from 0 to 1. */
  HeadView.prototype.drawLegend = function (svg, x, y, color) {
    var g = node('!g', {'class': 'pt-hv-legend'}, svg), steps = 10, w = 12;
    for (var s = 0; s < steps; s++) {
      node('!rect', {x: x + s * w, y: y, width: w, height: 9, fill: color,
                     'fill-opacity': fmt((s + 0.5) / steps)}, g);
    }
    node('!rect', {x: x, y: y, width: steps * w, height: 9, fill: 'none', stroke: '#999',
                   'stroke-width': 0.5}, g);
    node('!text', {x: x, y: y + 20, 'font-size': 10}, g, '0');
    node('!text', {x: x + steps * w, y: y + 20, 'font-size': 10, 'text-anchor': 'end'}, g, '1');
    var head = this.state.head === 'all' ? 'mean of the heads' : 'head ' + this.state.head;
    node('!text', {x: x + steps * w + 8, y: y + 8, 'font-size': 10}, g,
         'attention weight (' + head + ')');
  };

  function initAll() {
    var roots = document.querySelectorAll('div.pt-headview');
    for (var n = 0; n < roots.length; n++) {
      var r = roots[n];
      if (r.ptHeadView) continue;
      try {
        r.ptHeadView = new HeadView(r);
      } catch (e) {
        r.appendChild(document.createTextNode('The head view could not be drawn: ' + e));
        throw e;
      }
    }
  }

  window.ptHeadView = {initAll: initAll, HeadView: HeadView};
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', initAll);
  else initAll();
})();
