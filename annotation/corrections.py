"""Corrections to the model's clusters, made in the gallery (or by hand) and applied on export.

corrections.csv has a header and one row per change (columns in any order; `id` optional):

    id,path,from,to
    17,/home/me/photos/a.jpg,2,0      an image moved from its cluster 2 to cluster 0
    ,,3,5                            cluster 3 merged into cluster 5 (no id, no path)

`path` is the image's path as annotations.csv writes it, `id` its `id` there (which tells apart
two paths that read the same); `from` is the cluster the model put it in. Applying: each moved
image goes to its `to` cluster, then every image of a merged cluster (moved there or not) goes to
the cluster it was merged into, following chains (3 into 5, 5 into 7: 3 ends in 7).
"""
import csv
import io
from dataclasses import dataclass, field

import numpy as np

from annotation.names import AnnotationError
from annotation.tables import from_cell
from utils.text import ascii_number, excerpt
from utils.user_files import read_user_file

HEADER = ('id', 'path', 'from', 'to')
REQUIRED = ('path', 'from', 'to')


@dataclass(frozen=True)
class Row:
    line: int
    id: str
    path: str
    source: str  # the `from` cell
    target: str  # the `to` cell


@dataclass
class Corrections:
    file: str = None
    moves: dict = field(default_factory=dict)   # {image index: cluster}
    merges: dict = field(default_factory=dict)  # {cluster: cluster it is merged into}

    def final_cluster(self, cluster):
        """Where a cluster's images end after the merges."""
        while cluster in self.merges:
            cluster = self.merges[cluster]
        return cluster

    def moved(self, model_clusters):
        """Per image, its cluster after the moves (before the merges)."""
        moved = np.asarray(model_clusters).copy()
        moved[list(self.moves)] = list(self.moves.values())
        return moved

    def apply(self, model_clusters, num_clusters):
        """(clusters after the corrections, which images were corrected) as arrays."""
        moved = self.moved(model_clusters)
        final = np.asarray([self.final_cluster(k) for k in range(num_clusters)], dtype=np.int64)
        corrected = np.isin(moved, list(self.merges))
        corrected[list(self.moves)] = True
        return final[moved], corrected


def read_rows(path):
    """The rows of a corrections file, checked for form only (before any model runs)."""
    data = read_user_file(path, 'corrections file', AnnotationError)
    try:
        with io.StringIO(data.decode('utf-8-sig'), newline='') as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise AnnotationError(f"{path}, line 1: the header must name the columns "
                                      f"{', '.join(HEADER)} (missing: {', '.join(missing)})")
            column = {name: header.index(name) for name in HEADER if name in header}
            rows = []
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                cells = cells + [''] * (len(header) - len(cells))

                def cell(name):
                    return cells[column[name]] if name in column else ''
                rows.append(Row(reader.line_num, cell('id').strip(), from_cell(cell('path')),
                                cell('from').strip(), cell('to').strip()))
            return rows
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path}: not a corrections file (not UTF-8 text)") from e
    except csv.Error as e:
        raise AnnotationError(f"{path}: not a valid CSV file: {e}") from e


class _Matcher:
    """Checks each row against the images and clusters of the export, naming the line."""

    def __init__(self, path, paths, model_clusters, num_clusters):
        self.file, self.paths, self.model = path, paths, model_clusters
        self.num_clusters = num_clusters
        self.by_path = {}
        for index, image_path in enumerate(paths):
            self.by_path.setdefault(image_path, []).append(index)

    def fail(self, row, message):
        raise AnnotationError(f"{self.file}, line {row.line}: {message}")

    def cluster(self, row, text, column):
        cluster = ascii_number(text)  # ASCII digits only: '²'.isdigit() but int('²') fails
        if cluster is None or not cluster < self.num_clusters:
            self.fail(row, f"`{column}` must be a cluster of the model (0 to "
                           f"{self.num_clusters - 1}), got {excerpt(text)}")
        return cluster

    def image(self, row):
        if row.id:
            if ascii_number(row.id) is None or int(row.id) >= len(self.paths):
                self.fail(row, f"no image has id {excerpt(row.id)} in this export (ids 0 to "
                               f"{len(self.paths) - 1})")
            index = int(row.id)
            if self.paths[index] != row.path:
                self.fail(row, f"image {index} is {self.paths[index]!r} in this export, not "
                               f"{row.path!r}")
            return index
        found = self.by_path.get(row.path, [])
        if not found:
            self.fail(row, f"{row.path!r} is not an image of this export")
        if len(found) > 1:
            self.fail(row, f"{row.path!r} names {len(found)} images: give its id too")
        return found[0]


def match_corrections(path, rows, paths, model_clusters, num_clusters):
    """Corrections from the rows of `path`, checked against the images of the export (`paths`
    as annotations.csv writes them) and the model's clusters."""
    match = _Matcher(path, paths, model_clusters, num_clusters)
    corrections, seen = Corrections(path), {}
    for row in rows:
        source = match.cluster(row, row.source, 'from')
        target = match.cluster(row, row.target, 'to')
        if source == target:
            match.fail(row, f"`from` and `to` are both cluster {source}")
        if not row.path and not row.id:
            if source in corrections.merges:
                match.fail(row, f"cluster {source} is merged twice (also on line "
                                f"{seen[('merge', source)]})")
            corrections.merges[source] = target
            seen[('merge', source)] = row.line
            continue
        index = match.image(row)
        if int(model_clusters[index]) != source:
            match.fail(row, f"{row.path!r} is in cluster {int(model_clusters[index])} in this "
                            f"export, not {source}")
        if index in corrections.moves:
            match.fail(row, f"{row.path!r} is moved twice (also on line {seen[index]})")
        corrections.moves[index] = target
        seen[index] = row.line
    _refuse_merge_cycles(match, rows, corrections.merges, seen)
    return corrections


def _refuse_merge_cycles(match, rows, merges, seen):
    for start in merges:
        chain = [start]
        while chain[-1] in merges:
            chain.append(merges[chain[-1]])
            if chain[-1] == start:
                row = next(r for r in rows if r.line == seen[('merge', start)])
                match.fail(row, f"clusters are merged in a circle: "
                                f"{' into '.join(map(str, chain))}")
            if len(chain) > len(merges) + 1:
                break  # a circle further on, reported from its own start
