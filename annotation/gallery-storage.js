// Pending edits survive a reload: the gallery's names, moves and merges are kept in the
// browser's local storage under a key made from this export's content (so another export, or
// this folder exported again with the edits applied, starts clean), restored when the page
// opens, and leaving the page with edits not yet saved (Save names / Save corrections) asks
// first. Runs after gallery.js, through window.scanGallery; loaded with it as one script.
'use strict';

(function () {
  const gallery = window.scanGallery;
  const data = window.SCAN_GALLERY;
  if (!gallery || !data) return;
  const state = gallery.state;

  // FNV-1a over the export's content: the images, the model's clusters, names and corrections
  function hash(text) {
    let h = 0x811c9dc5;
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h.toString(16).padStart(8, '0');
  }
  const key = 'scan-gallery:' + hash(JSON.stringify(
    [data.prefix, data.tails, data.model, data.confidence, data.clusters, data.applied]));

  function storage() {  // null where the browser refuses it (private mode, disabled)
    try { return window.localStorage; } catch (error) { return null; }
  }
  function names() {
    return state.names.map((name, k) => (state.edited[k] ? name : null));
  }
  function corrections() {
    return {moves: [...state.moves].sort((a, b) => a[0] - b[0]),
            merges: [...state.merges].sort((a, b) => a[0] - b[0])};
  }
  const exported = {names: JSON.stringify(names()), corrections: JSON.stringify(corrections())};
  let saved = {...exported};  // what was last downloaded (at first: the export itself)
  let forgotten = false;

  function unsaved() {
    return JSON.stringify(names()) !== saved.names ||
      JSON.stringify(corrections()) !== saved.corrections;
  }

  function keep() {
    const store = storage();
    if (!store || forgotten) return;
    const edited = JSON.stringify(names()) !== exported.names ||
      JSON.stringify(corrections()) !== exported.corrections;
    try {
      if (edited) {
        store.setItem(key, JSON.stringify({names: names(), corrections: corrections(), saved}));
      } else {
        store.removeItem(key);
      }
    } catch (error) { /* storage full or refused: the page still works, unsaved as before */ }
  }

  function restore() {
    const store = storage();
    const text = store && store.getItem(key);
    if (!text) return 0;
    let kept;
    try { kept = JSON.parse(text); } catch (error) { return 0; }
    (kept.names || []).forEach((name, k) => {
      if (typeof name === 'string' && k < state.names.length) {
        state.names[k] = name;
        state.edited[k] = true;
      }
    });
    const valid = (pairs, limit) => (Array.isArray(pairs) ? pairs : []).filter(
      p => Array.isArray(p) && Number.isInteger(p[0]) && Number.isInteger(p[1]) &&
        p[0] >= 0 && p[0] < limit && p[1] >= 0 && p[1] < data.clusters.length);
    const c = kept.corrections || {};
    state.moves = new Map(valid(c.moves, data.tails.length));
    state.merges = new Map(valid(c.merges, data.clusters.length));
    if (kept.saved && typeof kept.saved.names === 'string') saved = kept.saved;
    return 1;
  }

  const note = document.createElement('span');
  note.id = 'kept-note';
  note.className = 'note';
  const forget = document.createElement('button');
  forget.type = 'button';
  forget.id = 'forget-edits';
  forget.textContent = 'Discard pending changes';
  forget.addEventListener('click', () => {
    const store = storage();
    if (store) store.removeItem(key);
    forgotten = true;
    location.reload();
  });
  const tool = document.getElementById('tool');
  if (tool) tool.append(note, forget);

  function showNote() {
    note.textContent = unsaved() ? 'Pending changes are kept in this browser until saved.' : '';
  }

  if (restore()) {
    gallery.render();
    note.textContent = 'Pending changes restored from this browser.';
  }
  // after the gallery's own handlers (bubbling, then a tick): every edit is kept at once
  for (const type of ['input', 'click', 'change']) {
    document.addEventListener(type, () => setTimeout(() => { keep(); showNote(); }, 0));
  }
  document.getElementById('save-names').addEventListener('click', () => {
    saved.names = JSON.stringify(names());
  });
  document.getElementById('save-corrections').addEventListener('click', () => {
    saved.corrections = JSON.stringify(corrections());
  });
  window.addEventListener('beforeunload', event => {
    if (forgotten || !unsaved()) return;
    event.preventDefault();
    event.returnValue = '';  // older browsers need it to ask
  });
  window.scanGalleryStorage = {key, unsaved, forget: () => { forgotten = true; }};
})();
