"""eval.py --annotate OUTDIR: one folder a person opens, names and corrects the clusters in.

    annotations.csv    one row per image: path, cluster, confidence, name, [label], source, id,
                       x, y (the map), duplicate_group, outlier_score (annotation/overview.py)
    map.png            the map: one point per image, coloured by cluster
    index.html         the gallery (with gallery.js, gallery-data.js, thumbs/)
    prototypes/        cluster_K.png: the most confident images of each cluster in a grid
    names.yml          the names in use, to edit and pass back with --names
    summary.json       sizes, names, corrections, skipped files, metrics

prepare_export checks everything (output folder, names, corrections) before anything is
written, then Export.write writes; the output folder's manifest (annotation.outfolder) makes a
rerun replace only what an earlier export wrote.
"""
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from annotation import gallery
from annotation.corrections import Corrections, match_corrections, read_rows
from annotation.images import image_set, match_names
from annotation.naming import suggestions_json
from annotation.names import AnnotationError, default_names, names_yaml, read_names
from annotation.outfolder import ExportFolder
from annotation.overview import MAP_NAME, Overview, OverviewSettings
from annotation.prediction_cache import images_key, same_images_as_before
from annotation.tables import csv_text
from utils.plots import prototype_grid
from utils.progress import progress
from utils.run_warnings import collapse_warnings
from utils.runtime import log
from utils.text import plural, visible_text

CSV_NAME = 'annotations.csv'
NAMES_NAME = 'names.yml'
SUMMARY_NAME = 'summary.json'
GRID_COLUMNS = 8
GRID_ROWS = 2
GRID_TITLE_CHARS = 80
THREADS = min(4, os.cpu_count() or 1)  # PIL decodes and encodes without the GIL

__all__ = ['AnnotationError', 'ExportRequest', 'check_request', 'prepare_export', 'read_names',
           'ranked_members', 'default_names']


@dataclass(frozen=True)
class ExportRequest:
    out_dir: str
    names_file: str = None        # --names
    corrections_file: str = None  # --corrections
    force: bool = False           # --force: write beside files that are not ours
    image_folders: tuple = ()     # where nothing is ever written or removed
    naming: object = None         # --naming-model: annotation.naming.NamingRequest
    overview: OverviewSettings = OverviewSettings()  # the map, duplicates, outliers


def check_request(request):
    """What can be checked before a model runs: the output folder, the corrections' form."""
    ExportFolder.open(request.out_dir, request.image_folders, request.force)
    if request.corrections_file:
        read_rows(request.corrections_file)


def ranked_members(probs, clusters, cluster):
    """Indices of a cluster's images, most confident first."""
    members = np.flatnonzero(clusters == cluster)
    return members[np.argsort(-probs[members, cluster], kind='stable')]


def prepare_export(request, dataset, probs, source, model_path, features=None, derived=None):
    """Check the output folder, the names and the corrections against the images and the
    model's predictions (probs: N x clusters; features: N x D, those the clusters were trained
    on, for the map and the outliers; derived: where what is derived from them is kept,
    annotation.derived_cache.DerivedCache); raises AnnotationError, having written
    nothing, when one of them is wrong."""
    folder = ExportFolder.open(request.out_dir, request.image_folders, request.force)
    images = image_set(dataset, source)
    num_clusters = probs.shape[1]
    model_clusters = probs.argmax(axis=1)
    corrections = Corrections()
    if request.corrections_file:
        rows = read_rows(request.corrections_file)
        corrections = match_corrections(request.corrections_file, rows, images.paths,
                                        model_clusters, num_clusters)
    clusters, corrected = corrections.apply(model_clusters, num_clusters)
    # a names.yml the user edited (or put) in the folder is kept and is the names by default
    kept_names = folder.user_file(NAMES_NAME)
    names_file = request.names_file or kept_names
    user_names = read_names(names_file, num_clusters) if names_file else {}
    export = Export(folder, images, probs, model_path, corrections, clusters, corrected,
                    names_file, user_names, write_names=kept_names is None,
                    naming=request.naming is not None,
                    features=features, overview_settings=request.overview, derived=derived)
    folder.check_plan(export.planned_files())
    return export


def shortened(name, limit=GRID_TITLE_CHARS):
    """A name as a grid's title shows it: a very long one is cut (matplotlib would draw it all)."""
    return name if len(name) <= limit else name[:limit - 1] + '…'


class Export:
    """A checked export: write() writes it."""

    def __init__(self, folder, images, probs, model_path, corrections, clusters, corrected,
                 names_file, user_names, write_names, naming=False, features=None,
                 overview_settings=OverviewSettings(), derived=None):
        self.folder, self.images, self.probs = folder, images, probs
        self.model_path, self.corrections = visible_text(model_path), corrections
        self.clusters, self.corrected = clusters, corrected
        self.names_file = visible_text(names_file) if names_file else None
        self.user_names, self.write_names = user_names, write_names
        self.features, self.overview_settings = features, overview_settings
        self.derived = derived
        self.num_clusters = probs.shape[1]
        self.sizes = np.bincount(clusters, minlength=self.num_clusters)
        self.kept = [k for k in range(self.num_clusters) if k not in corrections.merges]  # shown
        self.notes, self.warnings = [], []  # of the run that made the model (eval.py sets them)
        self.images_key = images_key(images.dataset)
        self.naming, self.suggestions, self.naming_info = naming, {}, None

    def planned_files(self):
        files = [CSV_NAME, 'index.html', 'gallery.js', 'gallery-data.js', SUMMARY_NAME,
                 gallery.MAP_SCRIPT, MAP_NAME]
        files += [NAMES_NAME] if self.write_names else []
        files += [gallery.NAMING_SCRIPT] if self.naming else []
        files += [gallery.thumbnail_path(i) for i in range(len(self.images))]
        return files + [self._grid_path(k) for k in self.kept if self.sizes[k]]

    @staticmethod
    def _grid_path(k):
        return f"prototypes/cluster_{k:03d}.png"  # a URL path in the gallery too

    def write(self, matched_names=None):
        """Write every file; `matched_names` ({cluster: class}, e.g. from the training split)
        name the clusters where the images have no labels of their own. Returns the CSV's
        path."""
        own, metrics, self.overview = self._derived()
        names = default_names(self.num_clusters, own or matched_names)
        names.update({k: s.chosen for k, s in self.suggestions.items()})
        names.update(self.user_names)  # the user's names always win
        self.names = names  # for --export-folders
        try:
            return self._write_files(names, metrics)
        except OSError as error:  # a full disk, a folder made read-only meanwhile, ...
            raise AnnotationError(
                f"could not write the export into {self.folder.path}: {error}. Run again once "
                f"fixed: the files already written are replaced then") from error
        finally:
            self.folder.release()

    def _derived(self):
        """(own names, metrics, Overview): what the predictions alone give, from the cache of
        an earlier export of the same predictions where there is one."""
        saved = self.derived.load(self.overview_settings) if self.derived else None
        if saved is not None:
            log(f"map, duplicates, outliers and label matching reused from {self.derived.path}")
            return saved
        own, metrics = match_names(self.images.dataset, self.probs)
        overview = Overview.compute(self.images, self.probs, self.features,
                                    self.overview_settings)
        if self.derived:
            self.derived.save(own, metrics, overview)
        return own, metrics, overview

    def _write_files(self, names, metrics):
        folder = self.folder
        folder.begin(self.planned_files())
        csv_path = folder.write_text(CSV_NAME, self._csv(names))
        failed = {}  # {image: why it could not be read again}
        self._write_thumbnails(failed)
        grids = self._write_grids(names, failed)
        self._write_gallery(names, grids, metrics)
        if self.write_names:
            folder.write_text(NAMES_NAME, names_yaml(names))
        folder.write_text(SUMMARY_NAME, json.dumps(self._summary(names, metrics, failed),
                                                   indent=2, ensure_ascii=False))
        folder.finish()
        return csv_path

    # ---------------------------------------------------------------------------- files

    def naming_members(self):
        """{cluster: its images, most confident first} of the non-empty clusters shown."""
        return {k: ranked_members(self.probs, self.clusters, k) for k in self.kept
                if self.sizes[k]}

    def set_suggestions(self, suggestions, info):
        """Names suggested per cluster (annotation.naming), and how they were made."""
        self.suggestions, self.naming_info = suggestions, info

    def confidences(self):
        """Per image, the model's probability of the cluster it is in (after corrections)."""
        return self.probs[np.arange(len(self.clusters)), self.clusters]

    def _csv(self, names):
        labels = self.images.labels
        header = ['path', 'cluster', 'confidence', 'name'] + (['label'] if labels else []) \
            + ['source', 'id'] + Overview.CSV_HEADER
        confidences = self.confidences()
        rows = ([path, int(k), f"{confidences[i]:.4f}", names[int(k)]]
                + ([labels[i]] if labels else [])
                + ['corrected' if self.corrected[i] else 'model', i]
                + self.overview.csv_cells(i)
                for i, (path, k) in enumerate(zip(self.images.paths, self.clusters)))
        return csv_text(header, rows)

    def _load(self, load, index, failed):
        """An image for a thumbnail or grid; a grey square where the file can no longer be read
        (changed or removed since it was checked), listed in the summary."""
        try:
            return load(index)
        except Exception as error:  # PIL raises many types on bad data
            failed[index] = f"{type(error).__name__}: {error}"
            return Image.new('RGB', (gallery.THUMB_SIZE, gallery.THUMB_SIZE), (200, 200, 200))

    def _write_thumbnails(self, failed):
        same_images = same_images_as_before(self.folder, self.images_key)

        def write_one(index):
            png = self.images.take_thumbnail_png(index)  # made by the duplicate search
            if same_images and self.folder.keep(gallery.thumbnail_path(index)):
                return  # an earlier export of these very images made it
            if png is None:
                png = gallery.thumbnail_png(self._load(self.images.gallery_thumbnail, index,
                                                       failed))
            self.folder.write(gallery.thumbnail_path(index), png)

        with ThreadPoolExecutor(THREADS) as pool:
            list(progress(pool.map(write_one, range(len(self.images))), total=len(self.images),
                          unit='image', desc='Thumbnails', leave=False))

    def _write_grids(self, names, failed):
        """prototypes/cluster_K.png for each non-empty cluster; {cluster: relative path}."""
        grids = {}
        for k in self.kept:
            members = ranked_members(self.probs, self.clusters, k)[:GRID_COLUMNS * GRID_ROWS]
            if len(members) == 0:
                continue
            images = [np.asarray(self._load(self.images.load, int(i), failed)) for i in members]
            rows = [images[r:r + GRID_COLUMNS] for r in range(0, len(images), GRID_COLUMNS)]
            titles = [f"{k}: {shortened(names[k])}\n(n={self.sizes[k]})"] + [''] * (len(rows) - 1)
            buffer = io.BytesIO()
            prototype_grid(rows, titles, buffer)
            grids[k] = self._grid_path(k)
            self.folder.write(grids[k], buffer.getvalue())
        return grids

    def _summary_lines(self, metrics):
        images, sizes = self.images, self.sizes
        lines = [f"{len(images):,} images in {len(self.kept)} clusters "
                 f"({sum(1 for k in self.kept if sizes[k])} non-empty); model {self.model_path}."]
        if metrics:
            lines.append(f"The model against the labels of the images: ACC {metrics['acc']:.4f}, "
                         f"NMI {metrics['nmi']:.4f}, ARI {metrics['ari']:.4f}, "
                         f"AMI {metrics['ami']:.4f}.")
        if self.corrections.file:
            lines.append(f"Corrections applied from {visible_text(self.corrections.file)}: "
                         f"{plural(len(self.corrections.moves), 'image')} moved, "
                         f"{plural(len(self.corrections.merges), 'cluster')} merged "
                         f"({plural(int(self.corrected.sum()), 'image')} corrected).")
        if images.skipped:
            lines.append(f"{plural(len(images.skipped), 'file')} skipped (listed at the end).")
        return lines + [f"Note: {n}" for n in self.notes] \
            + [f"Warning: {w}" for w in self.all_warnings()]

    def all_warnings(self):
        """The run's warnings, then those of these images' clusters (empty, collapsed)."""
        return self.warnings + collapse_warnings([self.sizes[k] for k in self.kept], self.kept)

    def _write_gallery(self, names, grids, metrics):
        model_sizes = np.bincount(self.probs.argmax(axis=1), minlength=self.num_clusters)
        clusters = [{'name': names[k], 'size': int(self.sizes[k]), 'grid': grids.get(k, ''),
                     'model_size': int(model_sizes[k])} for k in range(self.num_clusters)]
        for k, suggestions in self.suggestions.items():
            clusters[k]['suggestions'] = suggestions_json(suggestions)
        data = gallery.gallery_data(self.images, self.folder.path, self.probs.argmax(axis=1),
                                    self.probs.max(axis=1), clusters, self.corrections)
        data.update(self.overview.gallery_data(self.num_clusters))
        self.folder.write_text('gallery-data.js', gallery.data_script(data))
        self.folder.write_text('gallery.js', gallery.gallery_script())
        self.folder.write_text(gallery.MAP_SCRIPT, gallery.map_script())
        self.folder.write(MAP_NAME, self.overview.map_png(
            self.clusters, [names[k] for k in range(self.num_clusters)],
            f"{self.images.source}: {len(self.images):,} images ({self.overview.method})"))
        if self.naming:
            self.folder.write_text(gallery.NAMING_SCRIPT, gallery.naming_script())
        self.folder.write_text('index.html', gallery.index_html(
            f"Clusters of {self.images.source}",
            self._summary_lines(metrics) + [self.overview.summary_line()],
            self.images.skipped, CSV_NAME,
            scripts=([gallery.NAMING_SCRIPT] if self.naming else []) + [gallery.MAP_SCRIPT]))

    def _summary(self, names, metrics, failed):
        model_sizes = np.bincount(self.probs.argmax(axis=1), minlength=self.num_clusters)
        merged_sizes = np.bincount(self.corrections.moved(self.probs.argmax(axis=1)),
                                   minlength=self.num_clusters)
        clusters = []
        for k in range(self.num_clusters):
            entry = {'cluster': k, 'name': names[k], 'size': int(self.sizes[k])}
            if k in self.corrections.merges:
                entry['merged_into'] = self.corrections.final_cluster(k)
                entry['model_size'] = int(model_sizes[k])
            if k in self.suggestions:
                entry['suggested_name'] = self.suggestions[k].chosen
                entry['suggestions'] = suggestions_json(self.suggestions[k])
            clusters.append(entry)
        summary = {'images': self.images.source, 'model': self.model_path,
                   'num_images': len(self.images), 'names_file': self.names_file,
                   'clusters': clusters,
                   'skipped': [{'path': p, 'reason': r} for p, r in self.images.skipped],
                   'notes': self.notes, 'warnings': self.all_warnings(),
                   'images_key': self.images_key}
        summary.update(self.overview.summary(self.images.paths))
        if self.corrections.file:
            summary['corrections'] = {
                'file': visible_text(self.corrections.file),
                'moved_images': len(self.corrections.moves),
                'merged_clusters': [{'cluster': k, 'into': self.corrections.final_cluster(k),
                                     'images': int(merged_sizes[k])}
                                    for k in sorted(self.corrections.merges)],
                'corrected_images': int(self.corrected.sum())}
        if self.naming_info:
            summary['naming'] = self.naming_info
        if metrics:
            summary['metrics'] = {k: metrics[k] for k in ('acc', 'nmi', 'ari', 'ami')
                                  if k in metrics}
        if failed:
            summary['unreadable_now'] = [{'path': self.images.paths[i], 'reason': r}
                                         for i, r in sorted(failed.items())]
        return summary
