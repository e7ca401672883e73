/* pytransformer explain: the attention walk-through.
 *
 * Finds every <div class="pt-walkthrough"> holding a
 * <script type="application/json" class="pt-wt-data"> with
 *   {"kinds": {kind: {"title", "rows": [tokens], "cols": [tokens], "d",
 *                     "layers": [layer][head] = {"scores": [row][col] (null: masked),
 *                                                "weights": [row][col],
 *                                                "v": [col][d]}}},
 *    "initial": {"kind", "layer", "head", "query"}}
 * and draws, for the chosen kind, layer, head and query word:
 *   1. the factor matrix Q.K^T/sqrt(d) of every query (row) and key (column),
 *      the query's row outlined (click a row to choose it);
 *   2. that row's scores and their softmax, the attention weights;
 *   3. the query's output Z = sum_j w_j V_j worked out term by term, for the
 *      output dimensions where |Z| is largest (computed here, from the
 *      weights and values shown).
 * Tokens are only ever written as text nodes. No network, no dependencies.
 * Several copies of this script on one page are harmless.
 */
(function () {
  'use strict';
  if (window.ptWalkthrough) { window.ptWalkthrough.initAll(); return; }

  var SHOWN_DIMS = 6;

  function node(tag, attrs, parent, text) {
    var e = document.createElement(tag);
    for (var k in attrs) {
      if (Object.prototype.hasOwnProperty.call(attrs, k)) e.setAttribute(k, attrs[k]);
    }
    if (text !== undefined) e.appendChild(document.createTextNode(text));
    if (parent) parent.appendChild(e);
    return e;
  }
  function fmt(x, n) { return x.toFixed(n === undefined ? 3 : n).replace(/^-(0\.0+)$/, '$1'); }

  /* white -> blue for positive, white -> red for negative, scaled by `mag` */
  function shade(x, mag) {
    var t = mag > 0 ? Math.min(1, Math.abs(x) / mag) : 0;
    var c = x >= 0 ? [33, 102, 172] : [178, 24, 43];
    var rgb = c.map(function (v) { return Math.round(255 + (v - 255) * t); });
    return {bg: 'rgb(' + rgb.join(',') + ')', ink: t > 0.55 ? '#fff' : '#000'};
  }

  function Walkthrough(root) {
    this.root = root;
    this.data = JSON.parse(root.querySelector('script.pt-wt-data').textContent);
    this.kinds = Object.keys(this.data.kinds);
    var init = this.data.initial || {};
    this.state = {kind: init.kind || this.kinds[0], layer: init.layer || 0,
                  head: init.head || 0, query: init.query || 0};
    this.build();
    this.render();
  }

  Walkthrough.prototype.build = function () {
    var self = this, c = node('div', {'class': 'pt-hv-controls'}, this.root);
    function control(label, cls, key, parse) {
      var l = node('label', {}, c, label + ' ');
      var s = node('select', {'class': cls}, l);
      s.addEventListener('change', function () {
        self.state[key] = parse ? parseInt(s.value, 10) : s.value;
        self.render();
      });
      return s;
    }
    this.kindSel = control('Attention', 'pt-wt-kind', 'kind', false);
    this.kinds.forEach(function (k) {
      node('option', {value: k}, self.kindSel, self.data.kinds[k].title || k);
    });
    this.layerSel = control('Layer', 'pt-wt-layer', 'layer', true);
    this.headSel = control('Head', 'pt-wt-head', 'head', true);
    this.querySel = control('Query word', 'pt-wt-query', 'query', true);
    this.status = node('div', {'class': 'pt-hv-status', 'aria-live': 'polite'}, this.root);
    this.factorBox = node('div', {'class': 'pt-wt-factor'}, this.root);
    this.rowBox = node('div', {'class': 'pt-wt-row'}, this.root);
    this.sumBox = node('div', {'class': 'pt-wt-sum'}, this.root);
  };

  Walkthrough.prototype.fill = function (sel, labels, current) {
    while (sel.firstChild) sel.removeChild(sel.firstChild);
    for (var i = 0; i < labels.length; i++) node('option', {value: String(i)}, sel, labels[i]);
    sel.value = String(current);
  };

  Walkthrough.prototype.render = function () {
    var st = this.state, k = this.data.kinds[st.kind];
    st.layer = Math.min(st.layer, k.layers.length - 1);
    st.head = Math.min(st.head, k.layers[st.layer].length - 1);
    st.query = Math.min(st.query, k.rows.length - 1);
    this.kindSel.value = st.kind;
    this.fill(this.layerSel, k.layers.map(function (_, i) { return 'layer ' + i; }), st.layer);
    this.fill(this.headSel, k.layers[st.layer].map(function (_, i) { return 'head ' + i; }),
              st.head);
    this.fill(this.querySel, k.rows, st.query);
    var h = k.layers[st.layer][st.head];
    this.root.setAttribute('data-state', st.kind + '/' + st.layer + '/' + st.head + '/' +
                           st.query);
    this.status.textContent = (k.title || st.kind) + ', layer ' + st.layer + ', head ' +
      st.head + ' (d = ' + k.d + '); query word \u201c' + k.rows[st.query] + '\u201d.';
    this.drawFactor(k, h);
    this.drawRow(k, h);
    this.drawSum(k, h);
  };

  /* 1. the factor matrix */
  Walkthrough.prototype.drawFactor = function (k, h) {
    var self = this, box = this.factorBox;
    while (box.firstChild) box.removeChild(box.firstChild);
    node('h3', {}, box, '1. The factor matrix: every query word\u2019s score for every key ' +
         'word, Q\u00b7K\u1d40 / \u221ad');
    var mag = 0;
    h.scores.forEach(function (r) {
      r.forEach(function (x) { if (x !== null) mag = Math.max(mag, Math.abs(x)); });
    });
    var t = node('table', {'class': 'pt-wt-table pt-wt-matrix'}, box);
    var hr = node('tr', {}, node('thead', {}, t));
    node('th', {}, hr, 'query \u2193  key \u2192');
    k.cols.forEach(function (w) { node('th', {}, hr, w); });
    var tb = node('tbody', {}, t);
    h.scores.forEach(function (r, i) {
      var tr = node('tr', {'data-i': i, 'class': i === self.state.query ? 'pt-wt-sel' : ''}, tb);
      tr.addEventListener('click', function () { self.state.query = i; self.render(); });
      node('th', {}, tr, k.rows[i]);
      r.forEach(function (x, j) {
        if (x === null) {
          node('td', {'class': 'pt-wt-masked', title: 'masked: may not attend'}, tr, '\u00b7');
          return;
        }
        var s = shade(x, mag);
        node('td', {style: 'background:' + s.bg + ';color:' + s.ink, 'data-j': j,
                    title: k.rows[i] + ' \u00b7 ' + k.cols[j] + ' / \u221a' + k.d + ' = ' +
                           fmt(x)}, tr, fmt(x, 2));
      });
    });
  };

  /* 2. the chosen row and its softmax */
  Walkthrough.prototype.drawRow = function (k, h) {
    var box = this.rowBox, i = this.state.query;
    while (box.firstChild) box.removeChild(box.firstChild);
    node('h3', {}, box, '2. Row \u201c' + k.rows[i] + '\u201d through the softmax: the ' +
         'attention weights');
    var t = node('table', {'class': 'pt-wt-table'}, box);
    var hr = node('tr', {}, node('thead', {}, t));
    node('th', {}, hr, 'key word');
    k.cols.forEach(function (w) { node('th', {}, hr, w); });
    var tb = node('tbody', {}, t), sr = node('tr', {}, tb), wr = node('tr', {}, tb);
    node('th', {}, sr, 'score');
    node('th', {}, wr, 'weight');
    var best = 0;
    h.weights[i].forEach(function (w, j) { if (w > h.weights[i][best]) best = j; });
    h.scores[i].forEach(function (x, j) {
      node('td', {}, sr, x === null ? 'masked' : fmt(x, 2));
      node('td', {'class': j === best ? 'pt-wt-best' : '', 'data-w': h.weights[i][j]}, wr,
           fmt(h.weights[i][j], 3));
    });
    node('p', {'class': 'pt-hv-status'}, box,
         'weight_j = exp(score_j) / \u03a3 exp(score); the weights of the row sum to 1. ' +
         'The largest goes to \u201c' + k.cols[best] + '\u201d.');
  };

  /* 3. the output as the weighted sum of the value vectors */
  Walkthrough.prototype.drawSum = function (k, h) {
    var box = this.sumBox, i = this.state.query, w = h.weights[i], d = k.d;
    while (box.firstChild) box.removeChild(box.firstChild);
    var z = [], c, j;
    for (c = 0; c < d; c++) {
      z.push(0);
      for (j = 0; j < k.cols.length; j++) z[c] += w[j] * h.v[j][c];
    }
    var dims = z.map(function (x, c) { return c; })
      .sort(function (a, b) { return Math.abs(z[b]) - Math.abs(z[a]) || a - b; })
      .slice(0, Math.min(SHOWN_DIMS, d)).sort(function (a, b) { return a - b; });
    this.root.setAttribute('data-z', JSON.stringify(z.map(function (x) { return +fmt(x, 4); })));
    node('h3', {}, box, '3. The output of \u201c' + k.rows[i] + '\u201d: Z = \u03a3\u2c7c ' +
         'weight\u2c7c \u00d7 V\u2c7c, dimension by dimension');
    var t = node('table', {'class': 'pt-wt-table pt-wt-sumtable'}, box);
    var hr = node('tr', {}, node('thead', {}, t));
    node('th', {}, hr, 'key word j');
    node('th', {}, hr, 'weight');
    dims.forEach(function (c) { node('th', {}, hr, 'dim ' + c); });
    var tb = node('tbody', {}, t);
    k.cols.forEach(function (word, j) {
      var tr = node('tr', {}, tb);
      node('th', {}, tr, word);
      node('td', {}, tr, fmt(w[j], 3));
      dims.forEach(function (c) {
        node('td', {title: fmt(w[j], 3) + ' \u00d7 ' + fmt(h.v[j][c]) + ' (weight \u00d7 ' +
                    'value)'}, tr, fmt(w[j] * h.v[j][c]));
      });
    });
    var zr = node('tr', {'class': 'pt-wt-total'}, tb);
    node('th', {}, zr, 'Z = sum');
    node('td', {}, zr, fmt(w.reduce(function (a, b) { return a + b; }, 0), 3));
    dims.forEach(function (c) { node('td', {'data-c': c}, zr, fmt(z[c])); });
    node('p', {'class': 'pt-hv-status'}, box,
         'Each cell is weight \u00d7 the key word\u2019s value in that dimension (hover for the ' +
         'two factors); the bottom row adds them up. Shown: the ' + dims.length + ' of ' + d +
         ' dimensions where the output is largest; the others are summed the same way. ' +
         'This head\u2019s output then goes, with the other heads\u2019, through the output ' +
         'projection.');
  };

  function initAll() {
    var roots = document.querySelectorAll('div.pt-walkthrough');
    for (var n = 0; n < roots.length; n++) {
      var r = roots[n];
      if (r.ptWalkthrough) continue;
      try {
        r.ptWalkthrough = new Walkthrough(r);
      } catch (e) {
        r.appendChild(document.createTextNode('The walk-through could not be drawn: ' + e));
        throw e;
      }
    }
  }

  window.ptWalkthrough = {initAll: initAll, Walkthrough: Walkthrough};
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', initAll);
  else initAll();
})();
