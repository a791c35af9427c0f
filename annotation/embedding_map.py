"""The map of an export: 2-D coordinates of every image (UMAP of the features the clusters were
trained on, through umap-learn) and map.png, the points coloured by cluster.

method 'auto': UMAP, except for small exports. UMAP's first call in a process pays numba's
compilation (about a minute on a shared CPU, docs/map.md), which a few hundred images do not
need: up to TSNE_MAX images the map is scikit-learn's t-SNE (a second or two there), and below
MIN_NEIGHBORS_IMAGES, where neither has neighbours enough, the first two principal components.
Every method is seeded (UMAP then runs on one thread).
"""
import warnings

import numpy as np

from utils.text import visible_text

MIN_NEIGHBORS_IMAGES = 16  # below this: PCA (too few images for a neighbour graph)
TSNE_MAX = 500  # up to this, t-SNE: faster than UMAP's compilation
METHODS = ('auto', 'umap', 'tsne', 'pca')


def normalized(features):
    features = np.asarray(features, np.float32)
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def chosen_method(method, n):
    if n < MIN_NEIGHBORS_IMAGES:
        return 'pca'
    if method == 'auto':
        return 'tsne' if n <= TSNE_MAX else 'umap'
    return method


def map_coordinates(features, method='auto', n_neighbors=15, min_dist=0.1, seed=0):
    """(N x 2 float32 coordinates of the L2-normalised features, the method used)."""
    features = normalized(features)
    method = chosen_method(method, len(features))
    if method == 'pca':
        return principal_plane(features), method
    if method == 'tsne':
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (len(features) - 1) / 3)
        return TSNE(2, perplexity=perplexity, init='pca', random_state=seed).fit_transform(
            features).astype(np.float32), method
    import umap  # here: numba's start-up is paid only by exports that draw a UMAP

    reducer = umap.UMAP(n_neighbors=min(n_neighbors, len(features) - 1), min_dist=min_dist,
                        random_state=seed, n_components=2)
    with warnings.catch_warnings():  # "n_jobs overridden by setting random_state": intended
        warnings.simplefilter('ignore', UserWarning)
        return reducer.fit_transform(features).astype(np.float32), method


def principal_plane(features):
    """The first two principal components (zeros where there are fewer)."""
    coordinates = np.zeros((len(features), 2), np.float32)
    if len(features) < 2:
        return coordinates
    from sklearn.decomposition import PCA

    components = min(2, len(features) - 1, features.shape[1])
    coordinates[:, :components] = PCA(components).fit_transform(features)
    return coordinates


def unit_square(coordinates):
    """Coordinates scaled into [0, 1] x [0, 1], aspect kept (for the gallery's canvas)."""
    if len(coordinates) == 0:
        return coordinates
    low = coordinates.min(axis=0)
    span = float((coordinates.max(axis=0) - low).max()) or 1.0
    return (coordinates - low) / span


def cluster_colors(num_clusters):
    """An RGB colour per cluster (matplotlib's tab20, then hues spread round the circle), the
    same in map.png and the gallery."""
    import matplotlib

    table = [matplotlib.colormaps['tab20'](k % 20)[:3] for k in range(min(num_clusters, 20))]
    table += [matplotlib.colors.hsv_to_rgb(((k * 0.618) % 1, 0.65, 0.85))
              for k in range(20, num_clusters)]
    return [tuple(int(round(255 * c)) for c in rgb) for rgb in table]


def map_figure(coordinates, clusters, names, path_or_file, title):
    """map.png: one point per image coloured by cluster; a legend for up to 30 clusters (names
    drawn literally, as utils.plots draws them)."""
    from utils.plots import LITERAL, _save, plt

    colors = np.array(cluster_colors(len(names)), np.float32) / 255
    figure, axes = plt.subplots(figsize=(9, 8))
    size = float(np.clip(4000 / max(1, len(coordinates)), 0.5, 20))
    axes.scatter(coordinates[:, 0], coordinates[:, 1], s=size, c=colors[clusters],
                 linewidths=0, rasterized=True)
    if len(names) <= 30:
        for k, name in enumerate(names):
            if (clusters == k).any():
                axes.scatter([], [], s=30, color=colors[k], label=visible_text(f"{k}: {name}"))
        legend = axes.legend(loc='center left', bbox_to_anchor=(1.01, 0.5), fontsize=8,
                             frameon=False)
        for text in legend.get_texts():
            text.set_parse_math(False)
    axes.set_title(visible_text(title), fontsize=10, **LITERAL)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_aspect('equal', adjustable='datalim')
    _save(figure, path_or_file, format='png')
