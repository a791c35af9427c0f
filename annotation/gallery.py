"""The gallery: index.html, gallery.js and gallery-data.js, opened from file:// with no server.

index.html is a fixed frame (title, summary, toolbar, skipped files; HTML-escaped here);
gallery.js (hand-written, beside this module) builds each cluster's section from
gallery-data.js, which holds one entry per image in flat arrays, so that a folder of 100,000
images gives a page with a few dozen thumbnails per cluster (lazily loaded) and a "show more"
that pages through the rest, not a DOM of 100,000 images. One thumbnail per image, in thumbs/.
"""
import html
import io
import json
import os

from annotation.names import NAMES_HEADER
from utils.text import BLANK_CLASS

THUMB_SIZE = 128  # longest side of a thumbnail, in pixels; smaller images are kept as they are
SMALL_THUMB = 48  # thumbnails below this are shown enlarged with visible pixels
MOST, LEAST, PAGE = 12, 6, 60  # per cluster: most and least confident shown, then pages of 60
SHOWN_SKIPPED = 1000  # skipped files listed in the page (all of them are in summary.json)
SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'gallery.js')
NAMING_SCRIPT = 'naming.js'  # the suggested names' buttons (annotation/naming.js)
# written together as gallery.js: the gallery, then its local storage of pending edits
SCRIPTS = [os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
           for name in ('gallery.js', 'gallery-storage.js')]
MAP_SCRIPT = 'map.js'  # the map, duplicates and outliers (annotation/map.js)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 1.5em 1.5em; color: #222; }
#tool { position: sticky; top: 0; background: #f6f6f6; border-bottom: 1px solid #ccc;
        padding: 0.4em 0.6em; z-index: 1; }
#tool > * { margin: 0.2em 0.6em 0.2em 0; }
nav a { margin-right: 0.8em; white-space: nowrap; }
section.cluster { border-top: 1px solid #ccc; margin-top: 1.5em; padding-top: 0.5em; }
.thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
figure { margin: 0; text-align: center; font-size: 0.75em; color: #555; }
button.pick { padding: 2px; border: 3px solid transparent; background: none; cursor: pointer; }
figure.selected button.pick { border-color: #d33; background: #fdd; }
button.pick:focus-visible { outline: 3px solid #06c; }
figure img { height: 96px; width: auto; min-width: 24px; display: block; background: #eee; }
figure img.small { image-rendering: pixelated; }
input.name.confirmed { background: #dfd; }
.note { color: #777; }
"""


def thumbnail_path(index):
    """thumbs/<index>.png, relative to the gallery (gallery.js builds the same name)."""
    return f"thumbs/{index:07d}.png"


def thumbnail_png(image):
    """A PIL image (already at most THUMB_SIZE) as PNG bytes, fast to write."""
    buffer = io.BytesIO()
    image.save(buffer, format='PNG', compress_level=1)
    return buffer.getvalue()


def common_prefix(paths):
    """The longest start shared by all paths that ends at a separator ('' if none)."""
    prefix = os.path.commonprefix(paths) if paths else ''
    cut = max(prefix.rfind('/'), prefix.rfind(os.sep))
    return prefix[:cut + 1]


def gallery_data(images, out_dir, model_clusters, confidences, clusters, corrections):
    """What gallery.js needs, as a JSON-able dict. `clusters`: per cluster a dict with its
    name, size (after the applied corrections) and prototype grid path ('' if none)."""
    prefix = common_prefix(images.paths)
    return {
        'prefix': prefix,
        'tails': [p[len(prefix):] for p in images.paths],  # path = prefix + tail
        'hrefs': images.hrefs(out_dir),
        'labels': images.labels,
        'model': [int(c) for c in model_clusters],
        'confidence': [int(round(1000 * float(c))) for c in confidences],  # per mille
        'clusters': clusters,
        'blank': BLANK_CLASS,
        'applied': {'moves': [[int(i), int(k)] for i, k in sorted(corrections.moves.items())],
                    'merges': [[int(k), int(j)] for k, j in sorted(corrections.merges.items())]},
        'most': MOST, 'least': LEAST, 'page': PAGE, 'small_thumb': SMALL_THUMB,
        'names_header': NAMES_HEADER,
    }


def data_script(data):
    """gallery-data.js: a script, not a .json fetched by the page (file:// forbids fetch).
    ASCII-only JSON with '<' escaped, so that no text can end or break it, even inlined."""
    text = json.dumps(data, ensure_ascii=True, separators=(',', ':')).replace('<', '\\u003c')
    return f'window.SCAN_GALLERY = {text};\n'


def index_html(title, summary_lines, skipped, csv_name, scripts=()):
    """The frame of the page; gallery.js fills in the clusters (`scripts`, of our own, run
    after it)."""
    e = html.escape
    body = [f'<h1>{e(title)}</h1>'] + [f'<p>{e(line)}</p>' for line in summary_lines]
    body.append(f'<p>Every image with its cluster: <a href="{e(csv_name)}">{e(csv_name)}</a></p>')
    body.append('<noscript><p><strong>This gallery needs JavaScript</strong> to show the '
                'clusters; the prototypes/ folder and the CSV do not.</p></noscript>')
    body.append(
        '<div id="tool" role="region" aria-label="Names and corrections" hidden>'
        '<span id="selection"></span>'
        '<label>Move selected to <select id="move-target"></select></label>'
        '<button type="button" id="move">Move</button>'
        '<button type="button" id="clear-selection">Clear selection</button>'
        '<button type="button" id="save-names">Save names</button>'
        '<button type="button" id="save-corrections">Save corrections</button>'
        '<details id="changes"><summary id="changes-summary"></summary>'
        '<ul id="changes-list"></ul></details></div>')
    body.append('<div id="overview"></div>')  # map.js: the map, duplicates, top outliers
    body.append('<nav id="nav" aria-label="Clusters"></nav>')
    body.append('<section id="merged-section" hidden><h2>Merged clusters</h2>'
                '<ul id="merged"></ul></section>')
    body.append('<main id="clusters"></main>')
    if skipped:
        items = '\n'.join(f'<li>{e(p)}: {e(reason)}</li>' for p, reason in
                          skipped[:SHOWN_SKIPPED])
        more = (f'<p class="note">... and {len(skipped) - SHOWN_SKIPPED:,} more, all listed in '
                f'summary.json</p>' if len(skipped) > SHOWN_SKIPPED else '')
        body.append(f'<section id="skipped"><h2>Skipped files ({len(skipped):,})</h2>'
                    f'<ul>{items}</ul>{more}</section>')
    body.append('<script src="gallery-data.js"></script>\n<script src="gallery.js"></script>')
    body.extend(f'<script src="{e(script)}"></script>' for script in scripts)
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n'
            + '\n'.join(body) + '\n</body>\n</html>\n')


def gallery_script():
    texts = []
    for path in SCRIPTS:
        with open(path, encoding='utf-8') as f:
            texts.append(f.read())
    return '\n'.join(texts)


def naming_script():
    with open(os.path.join(os.path.dirname(SCRIPT), NAMING_SCRIPT), encoding='utf-8') as f:
        return f.read()


def map_script():
    with open(os.path.join(os.path.dirname(SCRIPT), MAP_SCRIPT), encoding='utf-8') as f:
        return f.read()
