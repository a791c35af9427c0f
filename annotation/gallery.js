// The cluster gallery as an annotation tool: name clusters, move images, merge clusters, and
// download names.yml and corrections.csv for eval.py --names / --corrections.
// Static: opened from file://, data from gallery-data.js (window.SCAN_GALLERY), no server.
// User text (names, paths, labels) only ever goes into textContent, input values and
// attributes set with setAttribute: never parsed as HTML.
'use strict';

(function () {
  const data = window.SCAN_GALLERY;
  const N = data.tails.length;
  const K = data.clusters.length;

  // ------------------------------------------------------------------ state
  // moves: image id -> cluster; merges: cluster -> cluster it is merged into. They start as the
  // corrections already applied in this export; "pending" is what differs from those.
  const applied = {moves: new Map(data.applied.moves), merges: new Map(data.applied.merges)};
  const state = {
    moves: new Map(applied.moves),
    merges: new Map(applied.merges),
    names: data.clusters.map(c => c.name),
    edited: data.clusters.map(() => false),
    selected: new Set(),
    shown: new Map(),  // "<cluster>-<list>" -> how many images of that list are on the page
  };
  // Image ids by the model's confidence, most confident first (ties by id): computed once.
  const ranked = Array.from({length: N}, (_, i) => i)
    .sort((a, b) => data.confidence[b] - data.confidence[a] || a - b);

  function finalCluster(cluster) {
    const seen = new Set();
    while (state.merges.has(cluster) && !seen.has(cluster)) {
      seen.add(cluster);
      cluster = state.merges.get(cluster);
    }
    return cluster;
  }

  function currentCluster(id) {
    const moved = state.moves.has(id) ? state.moves.get(id) : data.model[id];
    return finalCluster(moved);
  }

  function isCorrected(id) {
    return state.moves.has(id) || state.merges.has(data.model[id]);
  }

  function pathOf(id) {  // exactly as annotations.csv writes it
    return data.prefix + data.tails[id];
  }

  function groups() {
    // per cluster: its own images (model's, unchanged) and those corrected into it, ranked
    const own = Array.from({length: K}, () => []);
    const corrected = Array.from({length: K}, () => []);
    for (const id of ranked) {
      (isCorrected(id) ? corrected : own)[currentCluster(id)].push(id);
    }
    return {own, corrected};
  }

  // ------------------------------------------------------------------ small DOM helpers
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) {
        node.setAttribute(key, value === true ? '' : String(value));
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child);  // strings become text nodes
      }
    }
    return node;
  }

  function clusterLabel(k) {
    return `${k}: ${state.names[k]}`;
  }

  function plural(n, word) {
    return `${n.toLocaleString('en')} ${word}${n === 1 ? '' : 's'}`;
  }

  function sizes() {
    const counts = new Array(K).fill(0);
    for (let id = 0; id < N; id++) counts[currentCluster(id)]++;
    return counts;
  }

  // A select with no cluster left to choose (the last cluster: nothing to merge into) is
  // disabled, with its button: an empty value must never read as cluster 0.
  function clusterOptions(select, exclude) {
    select.replaceChildren();
    for (let k = 0; k < K; k++) {
      if (!state.merges.has(k) && k !== exclude) {
        select.append(el('option', {value: k}, clusterLabel(k)));
      }
    }
    select.disabled = select.options.length === 0;
    const button = select.closest('p') && select.closest('p').querySelector('button');
    if (button) button.disabled = select.disabled;
  }

  function chosenCluster(select) {
    return select.value === '' ? null : Number(select.value);
  }

  // blank as eval.py reads it (utils/text.py: BLANK_CLASS): a blank name keeps the export's
  const blank = new RegExp(`^${data.blank}*$`);

  // ------------------------------------------------------------------ thumbnails
  function thumbnail(id, note) {
    const label = data.labels ? ` (label: ${data.labels[id]})` : '';
    const title = `${data.tails[id]}${label}`;
    const selected = state.selected.has(id);
    const image = el('img', {src: `thumbs/${String(id).padStart(7, '0')}.png`, alt: title,
                             loading: 'lazy'});
    image.addEventListener('load', () => {
      if (image.naturalWidth < data.small_thumb) image.classList.add('small');
    });
    const pick = el('button', {type: 'button', class: 'pick', 'aria-pressed': selected,
                               title: `${title}: select to move`, 'data-focus': `thumb-${id}`},
                    image);
    pick.addEventListener('click', () => toggleSelected(id, figure, pick));
    const caption = el('figcaption', {}, (data.confidence[id] / 1000).toFixed(3));
    if (data.labels && data.labels[id]) {  // the true class, visible, in a labelled export
      caption.append(' ', el('span', {class: 'label'}, data.labels[id]));
    }
    if (note) caption.append(' ', el('span', {class: 'note'}, note));
    if (data.hrefs[id]) {
      caption.append(' ', el('a', {href: data.hrefs[id], title: `open ${data.tails[id]}`},
                              'open'));
    }
    const figure = el('figure', {class: 'thumb' + (selected ? ' selected' : ''), 'data-id': id},
                      pick, caption);
    return figure;
  }

  function toggleSelected(id, figure, pick) {
    if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
    figure.classList.toggle('selected', state.selected.has(id));
    pick.setAttribute('aria-pressed', state.selected.has(id));
    renderSelection();
  }

  function thumbList(ids, note) {
    const list = el('div', {class: 'thumbs'});
    for (const id of ids) list.append(thumbnail(id, note && note(id)));
    return list;
  }

  // A list that shows `first` images and a button for `data.page` more at a time.
  function pagedList(key, ids, first, note) {
    const wrapper = el('div', {class: 'paged'});
    const shown = Math.min(ids.length, state.shown.get(key) || first);
    wrapper.append(thumbList(ids.slice(0, shown), note));
    if (shown < ids.length) {
      const more = el('button', {type: 'button', class: 'show-more', 'data-focus': `more-${key}`},
                      `Show ${Math.min(data.page, ids.length - shown)} more (${
                        (ids.length - shown).toLocaleString('en')} not shown)`);
      more.addEventListener('click', () => {
        state.shown.set(key, shown + data.page);
        render();
      });
      wrapper.append(more);
    }
    return wrapper;
  }

  // ------------------------------------------------------------------ one cluster
  function section(k, own, corrected, size) {
    const exported = data.clusters[k].size;
    const sizeText = size === exported ? `(${plural(size, 'image')})`
      : `(${plural(size, 'image')} after the changes; ${
        exported.toLocaleString('en')} in this export)`;
    const node = el('section', {class: 'cluster', id: `cluster-${k}`, 'data-cluster': k,
                                'data-size': size});
    const name = el('input', {type: 'text', class: 'name', 'aria-label': `Name of cluster ${k}`,
                              'data-focus': `name-${k}`, size: 40});
    name.value = state.names[k];
    name.addEventListener('input', () => {
      state.names[k] = name.value;
      state.edited[k] = true;
      renderNav();
      renderChanges();
    });
    name.addEventListener('keydown', event => {
      if (event.key === 'Enter') {  // the name is kept as typed; Enter confirms it
        event.preventDefault();
        name.classList.add('confirmed');
        setTimeout(() => name.classList.remove('confirmed'), 600);
      }
    });
    node.append(el('h2', {}, `Cluster ${k} `, el('span', {class: 'note'}, sizeText)),
                el('p', {}, el('label', {}, 'Name ', name)));
    for (const hook of sectionHooks) hook(k, node);  // other scripts' additions (naming.js)

    const target = el('select', {'aria-label': `Cluster to merge cluster ${k} into`,
                                 'data-focus': `merge-target-${k}`});
    clusterOptions(target, k);
    const merge = el('button', {type: 'button', 'data-focus': `merge-${k}`}, 'Merge');
    merge.disabled = target.disabled;
    merge.addEventListener('click', () => {
      const into = chosenCluster(target);
      if (into === null || into === k) return;
      state.merges.set(k, into);
      render(`unmerge-${k}`);  // the section goes: focus its line in "Merged clusters"
    });
    node.append(el('p', {class: 'merge'}, el('label', {}, 'Merge this cluster into ', target),
                   ' ', merge));

    if (size === 0) {
      node.append(el('p', {class: 'note'}, 'No image is in this cluster.'));
    } else {
      const most = Math.min(own.length, data.most);
      const least = own.length > most ? Math.min(data.least, own.length - most) : 0;
      node.append(el('h3', {}, `Most confident (${plural(own.length, 'image')} from the model)`));
      node.append(pagedList(`${k}-most`, own.slice(0, own.length - least), most));
      if (least) {
        node.append(el('h3', {}, 'Least confident'),
                    thumbList(own.slice(own.length - least).reverse()));
      }
      if (corrected.length) {
        node.append(el('h3', {}, `Corrected into this cluster (${corrected.length})`));
        node.append(pagedList(`${k}-corrected`, corrected, data.most,
                              id => `from ${data.model[id]}`));
      }
    }
    if (data.clusters[k].grid) {
      node.append(el('p', {}, el('a', {href: data.clusters[k].grid}, 'prototype grid')));
    }
    return node;
  }

  // A name given by another script (a suggestion clicked): as if typed in the field.
  function setName(k, text) {
    state.names[k] = text;
    state.edited[k] = true;
    const field = document.querySelector(`#cluster-${k} input.name`);
    if (field) field.value = text;
    renderNav();
    renderChanges();
  }

  // ------------------------------------------------------------------ the page
  function renderNav() {
    const nav = document.getElementById('nav');
    const counts = sizes();
    nav.replaceChildren();
    for (let k = 0; k < K; k++) {
      if (!state.merges.has(k)) {
        nav.append(el('a', {href: `#cluster-${k}`}, `${clusterLabel(k)} (${counts[k]})`), ' ');
      }
    }
    clusterOptions(document.getElementById('move-target'));
    for (const select of document.querySelectorAll('section.cluster select')) {
      const k = Number(select.closest('section').dataset.cluster);
      const value = select.value;
      clusterOptions(select, k);
      select.value = value;
    }
  }

  function renderSelection() {
    const n = state.selected.size;
    document.getElementById('selection').textContent =
      n ? `${plural(n, 'image')} selected` : 'No image selected (click images to select)';
    document.getElementById('move').disabled = n === 0;
    document.getElementById('clear-selection').disabled = n === 0;
  }

  function pendingChanges() {
    const changes = [];
    const ids = new Set([...state.moves.keys(), ...applied.moves.keys()]);
    for (const id of [...ids].sort((a, b) => a - b)) {
      const now = state.moves.get(id), before = applied.moves.get(id);
      if (now !== before) {
        const to = now === undefined ? `back to cluster ${data.model[id]}` : `to cluster ${now}`;
        changes.push({text: `${data.tails[id]}: moved from cluster ${data.model[id]} ${to}`,
                      undo: () => restore(state.moves, applied.moves, id)});
      }
    }
    for (let k = 0; k < K; k++) {
      const now = state.merges.get(k), before = applied.merges.get(k);
      if (now !== before) {
        const text = now === undefined ? `cluster ${k} no longer merged`
          : `cluster ${k} merged into cluster ${now}`;
        changes.push({text, undo: () => restore(state.merges, applied.merges, k)});
      }
    }
    return changes;
  }

  function restore(current, original, key) {
    if (original.has(key)) current.set(key, original.get(key)); else current.delete(key);
    render();
  }

  function renderChanges() {
    const changes = pendingChanges();
    const renamed = state.edited.filter((edited, k) => edited &&
                                        state.names[k] !== data.clusters[k].name).length;
    const parts = [];
    if (changes.length) parts.push(plural(changes.length, 'pending correction'));
    if (renamed) parts.push(plural(renamed, 'renamed cluster'));
    document.getElementById('changes-summary').textContent =
      parts.length ? parts.join(', ') + ' (not saved until you save them)' : 'No pending change';
    const list = document.getElementById('changes-list');
    list.replaceChildren();
    for (const change of changes.slice(0, data.page * 5)) {
      const undo = el('button', {type: 'button'}, 'Undo');
      undo.addEventListener('click', change.undo);
      list.append(el('li', {}, change.text, ' ', undo));
    }
    if (changes.length > data.page * 5) {
      list.append(el('li', {}, `... and ${changes.length - data.page * 5} more`));
    }
    const merged = document.getElementById('merged');
    merged.replaceChildren();
    for (const [k, into] of [...state.merges].sort((a, b) => a[0] - b[0])) {
      const undo = el('button', {type: 'button', 'data-focus': `unmerge-${k}`}, 'Undo merge');
      undo.addEventListener('click', () => {
        state.merges.delete(k);
        render();
      });
      merged.append(el('li', {}, `Cluster ${k} (${state.names[k]}) is merged into `
                              + `cluster ${finalCluster(into)}. `, undo));
    }
    document.getElementById('merged-section').hidden = state.merges.size === 0;
  }

  // Rebuild the clusters from the state; keyboard focus stays on the same control (or `focus`).
  function render(focus) {
    const focused = focus || (document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.focus : undefined);
    const {own, corrected} = groups();
    const counts = sizes();
    const main = document.getElementById('clusters');
    main.replaceChildren();
    for (let k = 0; k < K; k++) {
      if (!state.merges.has(k)) main.append(section(k, own[k], corrected[k], counts[k]));
    }
    renderNav();
    renderSelection();
    renderChanges();
    document.dispatchEvent(new CustomEvent('scan-gallery-render'));  // map.js redraws
    const again = focused && document.querySelector(`[data-focus="${focused}"]`);
    if (again) again.focus();
  }

  // ------------------------------------------------------------------ actions
  function moveSelected() {
    const to = chosenCluster(document.getElementById('move-target'));
    if (to === null) return;
    for (const id of state.selected) {
      if (to === data.model[id]) state.moves.delete(id); else state.moves.set(id, to);
    }
    state.selected.clear();
    render();
  }

  // A YAML double-quoted scalar that yaml.safe_load reads back as exactly `text`
  // (the same escapes as annotation/names.py: yaml_string).
  function yamlString(text) {
    const named = {'"': '\\"', '\\': '\\\\', '\n': '\\n', '\t': '\\t', '\r': '\\r'};
    let out = '';
    for (const char of text) {
      const code = char.codePointAt(0);
      if (named[char]) {
        out += named[char];
      } else if (code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028
                 || code === 0x2029 || code === 0xfeff || (code >= 0xd800 && code <= 0xdfff)
                 || code === 0xfffe || code === 0xffff) {
        out += '\\u' + code.toString(16).padStart(4, '0');
      } else {
        out += char;
      }
    }
    return '"' + out + '"';
  }

  function namesYaml() {
    let text = data.names_header;
    for (let k = 0; k < K; k++) {
      // a blank field keeps the export's name: names are never empty
      const name = blank.test(state.names[k]) ? data.clusters[k].name : state.names[k];
      text += `${k}: ${yamlString(name)}\n`;
    }
    return text;
  }

  // A CSV cell: formula starts get a leading quote (annotation/tables.py: to_cell), then
  // quoted when it holds a comma, quote or line break.
  function csvCell(value) {
    let text = String(value);
    if (/^[=+\-@\t\r']/.test(text)) text = "'" + text;
    return /[",\r\n]/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text;
  }

  function correctionsCsv() {
    const rows = [['id', 'path', 'from', 'to']];
    for (const id of [...state.moves.keys()].sort((a, b) => a - b)) {
      rows.push([id, pathOf(id), data.model[id], state.moves.get(id)]);
    }
    for (const [k, into] of [...state.merges].sort((a, b) => a[0] - b[0])) {
      rows.push(['', '', k, into]);
    }
    return rows.map(row => row.map(csvCell).join(',')).join('\r\n') + '\r\n';
  }

  function download(name, text, type) {
    const link = el('a', {href: URL.createObjectURL(new Blob([text], {type})), download: name});
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  function start() {
    document.getElementById('move').addEventListener('click', moveSelected);
    document.getElementById('clear-selection').addEventListener('click', () => {
      state.selected.clear();
      render();
    });
    document.getElementById('save-names').addEventListener('click', () =>
      download('names.yml', namesYaml(), 'text/yaml;charset=utf-8'));
    document.getElementById('save-corrections').addEventListener('click', () =>
      download('corrections.csv', correctionsCsv(), 'text/csv;charset=utf-8'));
    document.getElementById('tool').hidden = false;
    render();
  }

  const sectionHooks = [];  // functions (cluster, section node) run as each section is built
  window.scanGallery = {state, namesYaml, correctionsCsv, yamlString, csvCell, render,
                        setName, sectionHooks, el,
                        currentCluster, thumbnail, renderSelection};  // the last three: map.js
  start();
})();
