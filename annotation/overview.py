"""The whole export at a glance: the map, the duplicate groups and the outlier scores of its
images, as CSV columns, gallery data, summary.json counts and map.png (docs/map.md).

The features are those the clusters were trained on (the backbone's, handed over by eval.py);
an export given none (made-up predictions in tests) maps the cluster probabilities instead.
"""
import io
import time
from dataclasses import dataclass, field

import numpy as np

from annotation.duplicates import Duplicates
from annotation.embedding_map import cluster_colors, map_coordinates, map_figure, unit_square
from annotation.outliers import outlier_scores, top_outliers
from utils.runtime import log

MAP_NAME = 'map.png'
SHOWN_OUTLIERS = 48   # in the gallery's "Top outliers"
LISTED_OUTLIERS = 20  # in summary.json
MAP_STEPS = 10000     # the gallery's coordinates are integers in [0, MAP_STEPS]


@dataclass(frozen=True)
class OverviewSettings:
    """The config's overview_kwargs (utils/config.py), and its seed."""
    map_method: str = 'auto'
    map_neighbors: int = 15
    map_min_dist: float = 0.1
    duplicate_distance: int = 20
    outlier_neighbors: int = 10
    seed: int = 0

    @classmethod
    def of_config(cls, cfg):
        return cls(**cfg.overview_kwargs, seed=cfg.seed)


@dataclass
class Overview:
    coordinates: np.ndarray   # N x 2
    method: str               # of the map: umap, tsne or pca
    duplicates: Duplicates
    outlier_score: np.ndarray
    settings: OverviewSettings
    seconds: dict = field(default_factory=dict)

    def __post_init__(self):
        self.square = unit_square(self.coordinates)

    @classmethod
    def compute(cls, images, probs, features, settings):
        seconds = {}
        start = time.perf_counter()
        features = probs if features is None else np.asarray(features)
        log(f"map of {len(images):,} image{'s' if len(images) != 1 else ''} ...")
        coordinates, method = map_coordinates(features, settings.map_method,
                                              settings.map_neighbors, settings.map_min_dist,
                                              settings.seed)
        seconds['map'] = time.perf_counter() - start
        start = time.perf_counter()
        duplicates = Duplicates.of_images(images, settings.duplicate_distance)
        seconds['duplicates'] = time.perf_counter() - start
        start = time.perf_counter()
        scores = outlier_scores(probs.max(axis=1), features, settings.outlier_neighbors)
        seconds['outliers'] = time.perf_counter() - start
        return cls(coordinates, method, duplicates, scores, settings, seconds)

    # ------------------------------------------------------------------ what the export writes

    CSV_HEADER = ['x', 'y', 'duplicate_group', 'outlier_score']

    def csv_cells(self, index):
        """x, y in [0, 1] (never negative: a leading '-' would be quoted as a formula start),
        the duplicate group ('' for none), the outlier score."""
        group = self.duplicates.groups[index]
        x, y = self.square[index]
        return [f"{x:.4f}", f"{y:.4f}", '' if group < 0 else int(group),
                f"{self.outlier_score[index]:.4f}"]

    def gallery_data(self, num_clusters):
        """What annotation/map.js needs (small integers keep gallery-data.js small)."""
        square = np.rint(self.square * MAP_STEPS).astype(int)
        top = top_outliers(self.outlier_score, SHOWN_OUTLIERS)
        return {'map': {'x': square[:, 0].tolist(), 'y': square[:, 1].tolist(),
                        'steps': MAP_STEPS, 'method': self.method,
                        'colors': ['#%02x%02x%02x' % c for c in cluster_colors(num_clusters)]},
                'duplicate_groups': self.duplicates.members(),
                'outliers': [[int(i), int(round(1000 * float(self.outlier_score[i])))]
                             for i in top]}

    def map_png(self, clusters, names, title):
        buffer = io.BytesIO()
        map_figure(self.coordinates, clusters, names, buffer, title)
        return buffer.getvalue()

    def summary(self, paths):
        top = top_outliers(self.outlier_score, LISTED_OUTLIERS)
        return {
            'map': {'file': MAP_NAME, 'method': self.method,
                    'seconds': round(self.seconds['map'], 2)},
            'duplicates': {**self.duplicates.summary(),
                           'max_distance_bits': self.settings.duplicate_distance,
                           'seconds': round(self.seconds['duplicates'], 2)},
            'outliers': {'top': [{'path': paths[i],
                                  'score': round(float(self.outlier_score[i]), 4)} for i in top],
                         'seconds': round(self.seconds['outliers'], 2)}}

    def summary_line(self):
        d = self.duplicates.summary()
        if not d['groups']:
            return "No duplicate images found."
        return (f"{d['groups']:,} group{'s' if d['groups'] != 1 else ''} of duplicate images "
                f"({d['extra_copies']:,} extra cop{'ies' if d['extra_copies'] != 1 else 'y'}); "
                f"see Duplicates below and the duplicate_group column.")
