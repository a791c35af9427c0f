"""How responsive the gallery's map view is with many images, in headless Chromium, and how long
the map itself takes to compute (UMAP, numba's first-call compilation included).

Writes a gallery of N made-up images (clustered map coordinates, no thumbnails) and prints the
page's load time, the time of one full redraw of the map (mean of 20, after zooming), of one
hover look-up (mean of 2,000) and of a click selecting an image; then, with --umap_images,
UMAP's time on that many clustered 128-d features, twice in one process.

    python benchmarks/map_view.py --images 100000 --screenshot /work/screens/map-100k.png
    python benchmarks/map_view.py --images 0 --umap_images 10000
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from annotation import gallery  # noqa: E402
from annotation.embedding_map import cluster_colors  # noqa: E402
from annotation.names import NAMES_HEADER  # noqa: E402

CLUSTERS = 20


def write_gallery(folder, n, seed=0):
    rng = np.random.default_rng(seed)
    model = rng.integers(0, CLUSTERS, n)
    centres = rng.uniform(0.1, 0.9, (CLUSTERS, 2))
    xy = np.clip(centres[model] + rng.normal(0, 0.04, (n, 2)), 0, 1)
    data = {
        'prefix': '/photos/', 'tails': [f'image_{i:06d}.jpg' for i in range(n)],
        'hrefs': [''] * n, 'labels': None, 'model': model.tolist(),
        'confidence': rng.integers(300, 1000, n).tolist(),
        'clusters': [{'name': f'cluster {k}', 'size': int((model == k).sum()), 'grid': '',
                      'model_size': int((model == k).sum())} for k in range(CLUSTERS)],
        'applied': {'moves': [], 'merges': []}, 'most': gallery.MOST, 'least': gallery.LEAST,
        'page': gallery.PAGE, 'small_thumb': gallery.SMALL_THUMB, 'names_header': NAMES_HEADER,
        'map': {'x': np.rint(xy[:, 0] * 10000).astype(int).tolist(),
                'y': np.rint(xy[:, 1] * 10000).astype(int).tolist(), 'steps': 10000,
                'method': 'umap',
                'colors': ['#%02x%02x%02x' % c for c in cluster_colors(CLUSTERS)]},
        'duplicate_groups': [[i, i + 1] for i in range(0, min(n, 200), 2)],
        'outliers': [[i, 900] for i in range(min(n, 48))],
    }
    with open(os.path.join(folder, 'gallery-data.js'), 'w', encoding='utf-8') as f:
        f.write(gallery.data_script(data))
    with open(os.path.join(folder, 'gallery.js'), 'w', encoding='utf-8') as f:
        f.write(gallery.gallery_script())
    with open(os.path.join(folder, 'map.js'), 'w', encoding='utf-8') as f:
        f.write(gallery.map_script())
    with open(os.path.join(folder, 'index.html'), 'w', encoding='utf-8') as f:
        f.write(gallery.index_html(f'{n:,} made-up images', ['A benchmark page.'], [],
                                   'annotations.csv', scripts=[gallery.MAP_SCRIPT]))


MEASURE = """
const m = window.scanMap, g = window.scanGallery, out = {};
m.zoomAt(m.view.width / 2, m.view.height / 2, 2);
let t = performance.now();
for (let i = 0; i < 20; i++) m.draw();
out.draw_ms = (performance.now() - t) / 20;
t = performance.now();
let found = 0;
for (let i = 0; i < 2000; i++) {
  if (m.nearest((i * 37) % 800, (i * 53) % 600) >= 0) found++;
}
out.hover_ms = (performance.now() - t) / 2000;
out.hover_hits = found;
t = performance.now();
m.setSelected([7], true);
m.draw();
out.click_select_ms = performance.now() - t;
t = performance.now();
g.render();
out.gallery_render_ms = performance.now() - t;
return out;
"""


def measure_page(n, screenshot):
    from selenium.webdriver.common.by import By

    from tests.browser import open_page, start_chromium

    with tempfile.TemporaryDirectory() as work:
        write_gallery(work, n)
        driver = start_chromium(work, os.path.join(work, 'downloads'))
        try:
            start = time.perf_counter()
            open_page(driver, work)
            driver.find_element(By.ID, 'map-canvas')
            load = time.perf_counter() - start
            first = driver.execute_script("return window.scanMap.view.lastDrawMs")
            figures = driver.execute_script("return window.scanMap ? "
                                            "document.querySelectorAll('figure').length : -1")
            result = driver.execute_script(MEASURE)
            if screenshot:
                driver.execute_script("window.scanMap.zoomAt(0, 0, 0.1);"
                                      "document.getElementById('map-section').scrollIntoView();"
                                      "window.scrollBy(0, -90)")
                driver.execute_script("window.scanMap.draw()")
                os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
                driver.save_screenshot(screenshot)
        finally:
            driver.quit()
    print(f"{n:,} images: page loaded in {load:.2f} s (first map draw {first:.1f} ms, "
          f"{figures} thumbnails in the DOM); redraw {result['draw_ms']:.1f} ms, hover look-up "
          f"{1000 * result['hover_ms']:.1f} us ({result['hover_hits']} of 2000 on a point), "
          f"click-select {result['click_select_ms']:.1f} ms, gallery re-render "
          f"{result['gallery_render_ms']:.0f} ms")
    if screenshot:
        print(f"screenshot: {screenshot}")


def measure_umap(n):
    from annotation.embedding_map import map_coordinates

    rng = np.random.default_rng(0)
    labels = rng.integers(0, CLUSTERS, n)
    features = rng.normal(0, 1, (CLUSTERS, 128))[labels] + rng.normal(0, 0.5, (n, 128))
    for attempt in ('first call (numba compiles)', 'second call'):
        start = time.perf_counter()
        map_coordinates(features, 'umap')
        print(f"UMAP of {n:,} images, {attempt}: {time.perf_counter() - start:.1f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=100000)
    parser.add_argument('--screenshot', default=None, help='a PNG of the map view, to keep')
    parser.add_argument('--umap_images', type=int, default=0)
    args = parser.parse_args()
    print("the machine may be shared: times are indicative")
    if args.images:
        measure_page(args.images, args.screenshot)
    if args.umap_images:
        measure_umap(args.umap_images)


if __name__ == '__main__':
    main()
