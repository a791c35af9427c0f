"""A static HTML gallery of clusters: index.html plus thumbnails, opened from file:// with no
server (every image is a relative path inside the output folder; text is HTML-escaped).

Hand-written: it is one page of plain HTML, which no library here makes more simply.
"""
import html
import os
import pathlib
import urllib.parse
from dataclasses import dataclass, field

THUMB_SIZE = 128  # longest side of a thumbnail, in pixels; smaller images are kept as they are
SMALL_THUMB = 48  # thumbnails below this are shown enlarged with visible pixels

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
nav a { margin-right: 0.8em; white-space: nowrap; }
section.cluster { border-top: 1px solid #ccc; margin-top: 1.5em; padding-top: 0.5em; }
.thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
figure { margin: 0; text-align: center; font-size: 0.75em; color: #555; }
figure img { height: 96px; width: auto; display: block; background: #eee; }
figure img.small { image-rendering: pixelated; }
.note { color: #777; }
.grid { max-width: 100%; }
"""


@dataclass
class Thumb:
    src: str         # path relative to the gallery folder
    caption: str     # shown under the image (the confidence)
    title: str       # tooltip: the image's path, cluster, label
    link: str = ''   # href of the original image (relative_href), if it is a file
    small: bool = False


@dataclass
class ClusterSection:
    cluster: int
    name: str
    size: int
    most_confident: list = field(default_factory=list)
    least_confident: list = field(default_factory=list)
    grid: str = ''   # per-cluster prototype grid, relative path


def save_thumbnail(image, out_dir, index):
    """Write a PIL image as thumbs/<index>.png in out_dir; returns (relative path, is small)."""
    image = image.copy()
    image.thumbnail((THUMB_SIZE, THUMB_SIZE))
    relative = f"thumbs/{index:07d}.png"
    os.makedirs(os.path.join(out_dir, 'thumbs'), exist_ok=True)
    image.save(os.path.join(out_dir, relative))
    return relative, max(image.size) < SMALL_THUMB


def relative_href(path, start):
    """A relative URL from the folder `start` to the file `path` (spaces, '#', '?' quoted)."""
    try:
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(start))
    except ValueError:  # another drive (Windows): no relative path exists
        return pathlib.Path(os.path.abspath(path)).as_uri()
    # as bytes: every file name, UTF-8 or not, becomes a URL that names that file
    return urllib.parse.quote(os.fsencode(relative.replace(os.sep, '/')))


def _thumbs(thumbs):
    if not thumbs:
        return '<p class="note">none</p>'
    figures = []
    for t in thumbs:
        img = (f'<img src="{html.escape(t.src)}" alt="{html.escape(t.title)}" '
               f'title="{html.escape(t.title)}"' + (' class="small"' if t.small else '') + '>')
        if t.link:
            img = f'<a href="{html.escape(t.link)}">{img}</a>'
        figures.append(f'<figure>{img}<figcaption>{html.escape(t.caption)}</figcaption></figure>')
    return '<div class="thumbs">' + '\n'.join(figures) + '</div>'


def _section(s):
    e = html.escape
    parts = [f'<section class="cluster" id="cluster-{s.cluster}" data-cluster="{s.cluster}" '
             f'data-size="{s.size}">',
             f'<h2>Cluster {s.cluster}: <span class="name">{e(s.name)}</span> '
             f'<span class="note">({s.size} image{"" if s.size == 1 else "s"})</span></h2>']
    if s.size == 0:
        parts.append('<p class="note">No image was assigned to this cluster.</p>')
    else:
        parts += ['<h3>Most confident</h3>', _thumbs(s.most_confident)]
        if s.least_confident:
            parts += ['<h3>Least confident</h3>', _thumbs(s.least_confident)]
        if s.grid:
            parts.append(f'<p><a href="{e(s.grid)}">prototype grid</a></p>')
    parts.append('</section>')
    return '\n'.join(parts)


def write_gallery(path, title, summary_lines, sections, skipped=(), csv_name=None):
    """index.html: a summary, links to each cluster, one section per cluster, skipped files."""
    e = html.escape
    nav = ' '.join(f'<a href="#cluster-{s.cluster}">{s.cluster}: {e(s.name)} ({s.size})</a>'
                   for s in sections)
    body = [f'<h1>{e(title)}</h1>'] + [f'<p>{e(line)}</p>' for line in summary_lines]
    if csv_name:
        body.append(f'<p>Every image with its cluster: <a href="{e(csv_name)}">{e(csv_name)}</a>'
                    f'</p>')
    body += [f'<nav>{nav}</nav>'] + [_section(s) for s in sections]
    if skipped:
        items = '\n'.join(f'<li>{e(p)}: {e(reason)}</li>' for p, reason in skipped)
        body.append(f'<section id="skipped"><h2>Skipped files ({len(skipped)})</h2>'
                    f'<ul>{items}</ul></section>')
    page = ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<title>{e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n'
            + '\n'.join(body) + '\n</body>\n</html>\n')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(page)
