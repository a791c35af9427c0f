"""What an export derives from the model's predictions alone, kept beside the saved predictions
(annotation/prediction_cache.py) so that a re-export with other names or corrections redoes none
of it: the map, the duplicate groups and the outlier scores (annotation/overview.py), and the
clusters matched to the images' own labels with the metrics (annotation/images.match_names).

The key is the predictions' key (model file, head, precision, every image's path, size and
modification time) and the overview settings: any change computes it all again.
"""
import dataclasses
import hashlib
import io
import json

import numpy as np

from annotation.duplicates import Duplicates
from annotation.overview import Overview
from utils.checkpoint import atomic_write


def derived_key(predictions_key, settings):
    text = json.dumps([predictions_key, dataclasses.asdict(settings)], sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


@dataclasses.dataclass(frozen=True)
class DerivedCache:
    path: str             # <step>/eval/overview-<source>.npz
    predictions_key: str

    def load(self, settings):
        """(own names, metrics, Overview) saved for these predictions and settings, or None."""
        try:
            with np.load(self.path, allow_pickle=False) as saved:
                if str(saved['key']) != derived_key(self.predictions_key, settings):
                    return None
                extra = json.loads(str(saved['json']))
                duplicates = Duplicates.restored(saved['groups'], saved['exact'],
                                                 int(extra['pairs']))
                overview = Overview(saved['coordinates'], str(saved['method']), duplicates,
                                    saved['outlier_score'], settings, extra['seconds'])
        except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: computed
            return None
        own = {int(k): v for k, v in extra['own'].items()}
        return own, extra['metrics'], overview

    def save(self, own, metrics, overview):
        extra = {'own': {str(k): v for k, v in own.items()}, 'metrics': metrics,
                 'seconds': overview.seconds, 'pairs': overview.duplicates.pairs}
        buffer = io.BytesIO()
        np.savez(buffer, key=np.array(derived_key(self.predictions_key, overview.settings)),
                 coordinates=np.asarray(overview.coordinates, np.float32),
                 method=np.array(overview.method), groups=overview.duplicates.groups,
                 exact=overview.duplicates.exact,
                 outlier_score=np.asarray(overview.outlier_score, np.float32),
                 json=np.array(json.dumps(extra)))
        atomic_write(self.path, lambda f: f.write(buffer.getvalue()), suffix='.npz')
