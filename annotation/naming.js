// The names a CLIP model suggested for each cluster (eval.py --naming-model), as buttons under
// the cluster's Name field: a click puts the suggestion in the field ("Save names" as usual).
// Names are text from the vocabulary: only ever set with textContent and setAttribute.
'use strict';

(function () {
  const gallery = window.scanGallery;
  const clusters = window.SCAN_GALLERY.clusters;
  const style = document.createElement('style');
  style.textContent = 'p.suggestions button { margin: 0 0.3em 0.2em 0; max-width: 22em; '
    + 'overflow: hidden; text-overflow: ellipsis; white-space: nowrap; vertical-align: top; }';
  document.head.append(style);

  function suggestions(k, section) {
    const list = clusters[k].suggestions;
    if (!list || !list.length) return;
    const line = gallery.el('p', {class: 'suggestions'}, 'Suggested: ');
    list.forEach((suggestion, rank) => {
      const score = suggestion.score.toFixed(3);
      const button = gallery.el('button', {
        type: 'button', class: 'suggestion', 'data-rank': rank,
        'data-focus': `suggestion-${k}-${rank}`,
        title: `${suggestion.name} (score ${score}): use as the name`}, suggestion.name,
        ' ', gallery.el('span', {class: 'note'}, score));
      button.addEventListener('click', () => gallery.setName(k, suggestion.name));
      line.append(button);
    });
    section.querySelector('input.name').closest('p').after(line);
  }

  gallery.sectionHooks.push(suggestions);
  gallery.render();
})();
