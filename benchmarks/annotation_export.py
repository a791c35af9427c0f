"""Time of eval.py --annotate's export against the number of images, and of the gallery page.

    python benchmarks/annotation_export.py                      # 2,500, 5,000 and 10,000 images
    python benchmarks/annotation_export.py --sizes 1000 --page 100000

For each size: a folder of that many small PNG photos-like images (32 x 32, generated) is
scanned as eval.py scans it, given made-up predictions for 10 clusters (the model's forward
pass is not part of the export), and exported into a new folder (thumbnails, grids, CSV,
gallery, manifest), timed. --page N also builds a gallery of N images (data only, no
thumbnails) and times in headless Chromium how long the page takes to show, to move an image
and to merge a cluster. Every figure is one JSON line on stdout.
"""
import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # run as a file from anywhere: the project's modules import

from annotation import gallery  # noqa: E402
from annotation.corrections import Corrections  # noqa: E402
from annotation.export import ExportRequest, prepare_export  # noqa: E402
from annotation.images import ImageSet  # noqa: E402
from data.image_folder import ImageFolderDataset  # noqa: E402

CLUSTERS = 10


def write_images(folder, count, seed=0):
    """count 32 x 32 RGB PNGs of noise over a colour gradient (compress like small photos)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder)
    ramp = np.linspace(0, 255, 32)[None, :, None]
    for i in range(count):
        base = ramp * rng.uniform(0.2, 1, 3) + rng.normal(0, 20, (32, 32, 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(
            os.path.join(folder, f'img_{i:06d}.png'))


def time_export(count, work):
    folder = os.path.join(work, f'images-{count}')
    write_images(folder, count)
    with contextlib.redirect_stdout(sys.stderr):  # the scan's summary: stdout is for figures
        dataset = ImageFolderDataset(folder)
    probs = np.random.default_rng(1).dirichlet(np.ones(CLUSTERS) * 0.3, count)
    out = os.path.join(work, f'export-{count}')
    start = time.perf_counter()
    prepare_export(ExportRequest(out, image_folders=(folder,)), dataset, probs, folder,
                   'model.pth').write()
    seconds = time.perf_counter() - start
    shutil.rmtree(folder)
    return {'figure': 'export', 'images': count, 'seconds': round(seconds, 2),
            'ms_per_image': round(1000 * seconds / count, 3),
            'export_mb': round(folder_bytes(out) / 2 ** 20, 1)}


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(root, f))
               for root, _, files in os.walk(folder) for f in files)


class FakeImages(ImageSet):
    """count images that are paths only: enough for the page's data."""

    def __init__(self, count):
        paths = [f'/photos/2024/{i // 1000:03d}/IMG_{i:07d}.JPG' for i in range(count)]
        super().__init__(None, '/photos', paths, None, [])

    def hrefs(self, start):
        return [f'../photos/{p[len("/photos/"):]}' for p in self.paths]


def time_page(count, work):
    """Seconds for the page of `count` images to show, to move one image and to merge one
    cluster, in headless Chromium (the thumbnails are missing: the data and DOM are timed)."""
    from tests.browser import open_page, start_chromium
    out = os.path.join(work, f'page-{count}')
    os.makedirs(out)
    probs = np.random.default_rng(2).dirichlet(np.ones(CLUSTERS) * 0.3, count)
    clusters = [{'name': f'cluster {k}', 'size': int((probs.argmax(1) == k).sum()), 'grid': '',
                 'model_size': 0} for k in range(CLUSTERS)]
    data = gallery.gallery_data(FakeImages(count), out, probs.argmax(1), probs.max(1),
                                clusters, Corrections())
    with open(os.path.join(out, 'gallery-data.js'), 'w') as f:
        f.write(gallery.data_script(data))
    with open(os.path.join(out, 'gallery.js'), 'w') as f:
        f.write(gallery.gallery_script())
    with open(os.path.join(out, 'index.html'), 'w') as f:
        f.write(gallery.index_html('page benchmark', [], [], 'annotations.csv'))
    driver = start_chromium(work, work)
    try:
        start = time.perf_counter()
        open_page(driver, out)
        shown = time.perf_counter() - start
        timings = driver.execute_script("""
            const g = window.scanGallery, t0 = performance.now();
            document.querySelector('figure button.pick').click();
            document.getElementById('move-target').value = '1';
            document.getElementById('move').click();
            const t1 = performance.now();
            document.querySelector('#cluster-2 p.merge button').click();
            return [t1 - t0, performance.now() - t1,
                    document.querySelectorAll('*').length, document.images.length];""")
    finally:
        driver.quit()
    return {'figure': 'page', 'images': count, 'load_s': round(shown, 2),
            'move_s': round(timings[0] / 1000, 3), 'merge_s': round(timings[1] / 1000, 3),
            'elements': timings[2], 'img_elements': timings[3],
            'data_mb': round(os.path.getsize(os.path.join(out, 'gallery-data.js')) / 2 ** 20, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', default='2500,5000,10000',
                        help='numbers of images to export, comma-separated ("" for none)')
    parser.add_argument('--page', type=int, default=0, metavar='N',
                        help='also time the gallery page of N images in headless Chromium')
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix='annotation-bench-')
    try:
        for count in [int(s) for s in args.sizes.split(',') if s]:
            print(json.dumps(time_export(count, work)), flush=True)
        if args.page:
            print(json.dumps(time_page(args.page, work)), flush=True)
    finally:
        shutil.rmtree(work)


if __name__ == '__main__':
    main()
