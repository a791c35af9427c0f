"""Step 1 learns: the shipped digits config mines neighbours that mostly share a class."""
import os

import numpy as np

from data.digits import Digits
from tests.pipeline_run import ROOT, run_step, simclr, write_env
from utils.mining import neighbor_accuracy


def test_pretext_on_digits_reaches_085_top20_neighbour_accuracy(tmp_path):
    env = write_env(str(tmp_path), tmp_path / 'out')
    config = os.path.join(ROOT, 'configs', 'pretext', 'simclr_digits.yml')
    # 30 of the config's 50 epochs keep the test short; the full run reaches about 0.94.
    run_step(simclr, env, config, 'epochs=30')
    indices = np.load(tmp_path / 'out' / 'digits' / 'pretext' / 'topk-train-neighbors.npy')
    assert indices.shape == (1437, 21)
    accuracy = neighbor_accuracy(indices, Digits('train').targets)
    print(f"top-20 neighbour accuracy after 30 epochs: {accuracy:.4f}")
    assert accuracy >= 0.85
