// The export at a glance, above the clusters: a map of every image (one point each, coloured by
// its current cluster; hover shows the thumbnail, click selects the image for "Move selected
// to", the wheel zooms, dragging pans), the groups of duplicate images (with "Select all but
// one") and the top outliers. Loaded after gallery.js, whose state it shares
// (window.scanGallery); it redraws when the gallery re-renders ('scan-gallery-render').
// One canvas and pixel writes, not one DOM node per point: 100,000 points stay responsive.
// User text only ever goes into textContent and attributes.
'use strict';

(function () {
  const data = window.SCAN_GALLERY;
  const gallery = window.scanGallery;
  if (!data.map || !gallery) return;
  const N = data.tails.length;
  const STEPS = data.map.steps;
  const PICK_RADIUS = 8;  // pixels: how close to a point a hover or click must be
  const GRID = 128;       // cells per side of the hover index
  const PAGE = 20;        // duplicate groups shown at a time

  const style = document.createElement('style');
  style.textContent = `
    #map-box { position: relative; max-width: 1000px; }
    #map-canvas { width: 100%; height: min(65vh, 640px); border: 1px solid #ccc; cursor: crosshair;
                  touch-action: none; display: block; background: #fff; }
    #map-tip { position: absolute; pointer-events: none; background: #fff; border: 1px solid #888;
               padding: 4px; font-size: 0.75em; max-width: 180px; z-index: 2; }
    #map-tip img { max-width: 128px; max-height: 128px; display: block; }
    #map-legend span { display: inline-block; margin-right: 0.8em; white-space: nowrap; }
    #map-legend i { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.2em; }
    .dup-group { border-left: 3px solid #ccc; padding-left: 0.5em; margin: 0.5em 0; }`;
  document.head.append(style);

  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
    for (const child of children) node.append(child);
    return node;
  }

  function plural(n, word, many) {
    return `${n.toLocaleString('en')} ${n === 1 ? word : (many || word + 's')}`;
  }

  // ------------------------------------------------------------------ the map
  const xs = Float32Array.from(data.map.x, v => v / STEPS);
  const ys = Float32Array.from(data.map.y, v => 1 - v / STEPS);  // y up, as in map.png
  const rgb = data.map.colors.map(hex => [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16)));

  // Hover index: the ids of each grid cell, contiguous (counting sort once).
  const cellOf = new Int32Array(N);
  const starts = new Int32Array(GRID * GRID + 1);
  for (let i = 0; i < N; i++) {
    const cx = Math.min(GRID - 1, Math.floor(xs[i] * GRID));
    const cy = Math.min(GRID - 1, Math.floor(ys[i] * GRID));
    cellOf[i] = cy * GRID + cx;
    starts[cellOf[i] + 1]++;
  }
  for (let c = 0; c < GRID * GRID; c++) starts[c + 1] += starts[c];
  const cells = new Int32Array(N);
  const filled = starts.slice(0, GRID * GRID);
  for (let i = 0; i < N; i++) cells[filled[cellOf[i]]++] = i;

  const canvas = el('canvas', {id: 'map-canvas', role: 'img', tabindex: '0',
                               'aria-label': `Map of ${plural(N, 'image')}: similar images are ` +
                                 'close; click a point to select its image'});
  const tip = el('div', {id: 'map-tip', hidden: ''});
  const view = {scale: 1, x: 0, y: 0, width: 0, height: 0, ratio: 1, hover: -1};
  let clusterOf = new Int32Array(N);

  function recolor() {
    for (let i = 0; i < N; i++) clusterOf[i] = gallery.currentCluster(i);
  }

  // data [0, 1] -> canvas pixels: the unit square fitted into the canvas, then zoomed and panned
  function fit() {
    const side = Math.min(view.width, view.height) * 0.94;
    return {side, left: (view.width - side) / 2, top: (view.height - side) / 2};
  }

  function toScreen(i, f) {
    return [f.left + (xs[i] * f.side - view.x) * view.scale,
            f.top + (ys[i] * f.side - view.y) * view.scale];
  }

  function toData(px, py, f) {
    return [((px - f.left) / view.scale + view.x) / f.side,
            ((py - f.top) / view.scale + view.y) / f.side];
  }

  function draw() {
    const start = performance.now();
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
    const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    view.width = width;
    view.height = height;
    view.ratio = ratio;
    const context = canvas.getContext('2d');
    const image = context.createImageData(width, height);
    const pixels = new Uint32Array(image.data.buffer);
    pixels.fill(0xffffffff);
    // ABGR in one 32-bit word: the pixel layout of little-endian machines (all browsers run on)
    const packed = Uint32Array.from(rgb, ([r, g, b]) => (255 << 24 | b << 16 | g << 8 | r) >>> 0);
    const f = fit();
    const base = N < 2000 ? 4 : N < 20000 ? 3 : 2;  // pixels of a point, growing with the zoom
    const size = Math.round(Math.min(8, base * Math.sqrt(view.scale)) * ratio);
    // toScreen inlined: this loop runs once per image on every redraw
    const ax = f.side * view.scale, bx = f.left - view.x * view.scale - size / 2;
    const by = f.top - view.y * view.scale - size / 2;
    const maxX = width - size, maxY = height - size;
    for (let i = 0; i < N; i++) {
      const x0 = Math.round(xs[i] * ax + bx), y0 = Math.round(ys[i] * ax + by);
      if (x0 < 0 || y0 < 0 || x0 > maxX || y0 > maxY) continue;
      const color = packed[clusterOf[i]];
      for (let row = y0 * width + x0, end = row + size * width; row < end; row += width) {
        for (let p = row; p < row + size; p++) pixels[p] = color;
      }
    }
    context.putImageData(image, 0, 0);
    context.lineWidth = 2 * ratio;
    context.strokeStyle = '#d33';
    for (const id of gallery.state.selected) ring(context, id, f, 5 * ratio);
    if (view.hover >= 0) {
      context.strokeStyle = '#000';
      ring(context, view.hover, f, 7 * ratio);
    }
    view.lastDrawMs = performance.now() - start;
  }

  function ring(context, id, f, radius) {
    const [sx, sy] = toScreen(id, f);
    context.beginPath();
    context.arc(sx, sy, radius, 0, 2 * Math.PI);
    context.stroke();
  }

  let pending = false;
  function redraw() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  }

  // The image nearest to a point of the canvas (CSS pixels), within PICK_RADIUS; -1 if none.
  function nearest(cssX, cssY) {
    const f = fit();
    const px = cssX * view.ratio, py = cssY * view.ratio;
    const [dx, dy] = toData(px, py, f);
    const reach = PICK_RADIUS * view.ratio / (view.scale * f.side);
    let best = -1, bestDistance = (PICK_RADIUS * view.ratio) ** 2;
    const low = v => Math.max(0, Math.floor((v - reach) * GRID));
    const high = v => Math.min(GRID - 1, Math.floor((v + reach) * GRID));
    for (let cy = low(dy); cy <= high(dy); cy++) {
      for (let cx = low(dx); cx <= high(dx); cx++) {
        const cell = cy * GRID + cx;
        for (let j = starts[cell]; j < starts[cell + 1]; j++) {
          const id = cells[j];
          const [sx, sy] = toScreen(id, f);
          const distance = (sx - px) ** 2 + (sy - py) ** 2;
          if (distance < bestDistance) {
            best = id;
            bestDistance = distance;
          }
        }
      }
    }
    return best;
  }

  function thumbSrc(id) {
    return `thumbs/${String(id).padStart(7, '0')}.png`;
  }

  function showTip(id, cssX, cssY) {
    if (id < 0) {
      tip.hidden = true;
      return;
    }
    const k = clusterOf[id];
    const label = data.labels ? ` (label: ${data.labels[id]})` : '';
    tip.replaceChildren(el('img', {src: thumbSrc(id), alt: ''}),
                        `${data.tails[id]}${label}`, el('br'),
                        `cluster ${k}: ${gallery.state.names[k]}`);
    tip.style.left = `${cssX + 14}px`;
    tip.style.top = `${cssY + 14}px`;
    tip.hidden = false;
  }

  // Selection shared with the gallery: the figures of the image on the page follow.
  function setSelected(ids, selected) {
    for (const id of ids) {
      if (selected) gallery.state.selected.add(id); else gallery.state.selected.delete(id);
      for (const figure of document.querySelectorAll(`figure[data-id="${id}"]`)) {
        figure.classList.toggle('selected', selected);
        const pick = figure.querySelector('button.pick');
        if (pick) pick.setAttribute('aria-pressed', selected);
      }
    }
    gallery.renderSelection();
    redraw();
  }

  function pointer(event) {
    const box = canvas.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  let drag = null;
  canvas.addEventListener('pointerdown', event => {
    drag = {start: pointer(event), x: view.x, y: view.y, moved: false};
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener('pointermove', event => {
    const [cssX, cssY] = pointer(event);
    if (drag) {
      const moveX = cssX - drag.start[0], moveY = cssY - drag.start[1];
      if (Math.abs(moveX) + Math.abs(moveY) > 3) drag.moved = true;
      if (drag.moved) {
        view.x = drag.x - moveX * view.ratio / view.scale;
        view.y = drag.y - moveY * view.ratio / view.scale;
        tip.hidden = true;
        redraw();
        return;
      }
    }
    const id = nearest(cssX, cssY);
    if (id !== view.hover) {
      view.hover = id;
      redraw();
    }
    showTip(id, cssX, cssY);
  });
  canvas.addEventListener('pointerup', event => {
    const wasDrag = drag && drag.moved;
    drag = null;
    if (wasDrag) return;
    const id = nearest(...pointer(event));
    if (id >= 0) setSelected([id], !gallery.state.selected.has(id));
  });
  canvas.addEventListener('pointerleave', () => {
    view.hover = -1;
    tip.hidden = true;
    redraw();
  });
  canvas.addEventListener('wheel', event => {
    event.preventDefault();
    const [cssX, cssY] = pointer(event);
    zoomAt(cssX * view.ratio, cssY * view.ratio, Math.exp(-event.deltaY * 0.002));
  }, {passive: false});

  // Zoom by `factor` keeping the canvas pixel (px, py) on the same spot of the map.
  function zoomAt(px, py, factor) {
    const f = fit();
    const scale = Math.min(400, Math.max(1, view.scale * factor));
    const [dx, dy] = toData(px, py, f);
    view.scale = scale;
    view.x = scale > 1 ? dx * f.side - (px - f.left) / scale : 0;  // fully out: the whole map
    view.y = scale > 1 ? dy * f.side - (py - f.top) / scale : 0;
    redraw();
  }

  function button(text, action, focus) {
    const node = el('button', {type: 'button', 'data-focus': focus}, text);
    node.addEventListener('click', action);
    return node;
  }

  function legend() {
    const node = el('p', {id: 'map-legend'});
    const counts = new Map();
    for (let i = 0; i < N; i++) counts.set(clusterOf[i], (counts.get(clusterOf[i]) || 0) + 1);
    for (const [k, n] of [...counts].sort((a, b) => a[0] - b[0]).slice(0, 60)) {
      const swatch = el('i', {});
      swatch.style.background = data.map.colors[k];
      node.append(el('span', {}, swatch, `${k}: ${gallery.state.names[k]} (${n})`));
    }
    return node;
  }

  // ------------------------------------------------------------------ duplicates, outliers
  let shownGroups = PAGE;

  function duplicatesSection() {
    const groups = data.duplicate_groups;
    const node = el('section', {id: 'duplicates'},
                    el('h2', {}, `Duplicates (${plural(groups.length, 'group')})`));
    if (!groups.length) {
      node.append(el('p', {class: 'note'}, 'No exact or near-duplicate images were found.'));
      return node;
    }
    node.append(el('p', {class: 'note'}, 'The same picture, copied, resized, re-encoded or ' +
                   'slightly cropped (column duplicate_group of the CSV). "Select all but one" ' +
                   'selects the copies, for "Move selected to".'));
    groups.slice(0, shownGroups).forEach((ids, g) => {
      const rest = ids.slice(1);
      node.append(el('div', {class: 'dup-group', 'data-group': g},
                     el('p', {}, `Group ${g}: ${plural(ids.length, 'image')} `,
                        button('Select all but one', () => {
                          setSelected(rest, true);
                        }, `dup-select-${g}`)),
                     thumbs(ids, id => (id === ids[0] ? 'kept' : 'copy'))));
    });
    if (groups.length > shownGroups) {
      node.append(button(`Show ${Math.min(PAGE, groups.length - shownGroups)} more groups (${
        (groups.length - shownGroups).toLocaleString('en')} not shown)`, () => {
        shownGroups += PAGE;
        renderSections();
      }, 'dup-more'));
    }
    return node;
  }

  function thumbs(ids, note) {
    const list = el('div', {class: 'thumbs'});
    for (const id of ids) list.append(gallery.thumbnail(id, note(id)));
    return list;
  }

  function outliersSection() {
    const scores = new Map(data.outliers);
    return el('section', {id: 'outliers'},
              el('h2', {}, `Top outliers (${data.outliers.length})`),
              el('p', {class: 'note'}, 'Images the model is least sure of and that are least ' +
                 'like their nearest neighbours (column outlier_score, 1 = most unusual).'),
              thumbs(data.outliers.map(([id]) => id),
                     id => `outlier ${(scores.get(id) / 1000).toFixed(3)}`));
  }

  const box = el('div', {id: 'map-box'}, canvas, tip);
  const legendHolder = el('div', {});
  const sections = el('div', {});
  const zoomIn = button('Zoom in', () => zoomAt(view.width / 2, view.height / 2, 1.5), 'map-in');
  const zoomOut = button('Zoom out', () => zoomAt(view.width / 2, view.height / 2, 1 / 1.5),
                         'map-out');
  const reset = button('Reset view', () => {
    view.scale = 1;
    view.x = view.y = 0;
    redraw();
  }, 'map-reset');
  document.getElementById('overview').append(
    el('section', {id: 'map-section'},
       el('h2', {}, 'Map'),
       el('p', {class: 'note'}, `${plural(N, 'image')} placed by ${data.map.method.toUpperCase()} ` +
          'of their features: similar images are close. Hover for the image, click to select ' +
          'it, scroll to zoom, drag to pan. The same map as a picture: ',
          el('a', {href: 'map.png'}, 'map.png')),
       el('p', {}, zoomIn, ' ', zoomOut, ' ', reset), box, legendHolder),
    sections);

  function renderSections() {
    legendHolder.replaceChildren(legend());
    sections.replaceChildren(duplicatesSection(), outliersSection());
  }

  function refresh() {
    recolor();
    renderSections();
    redraw();
  }

  document.addEventListener('scan-gallery-render', refresh);
  document.addEventListener('click', redraw);  // a thumbnail (de)selected in a cluster
  window.addEventListener('resize', redraw);
  window.scanMap = {view, draw, nearest, setSelected, zoomAt, toScreen, fit};
  refresh();
  draw();
})();
