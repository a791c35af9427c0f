"""A run killed after epoch k and rerun ends with the same weights as an uninterrupted run."""
import os
import shutil

import pytest
import torch

from tests.pipeline_run import (Killed, folder_outputs, kill_after_epochs, run_step, scan,
                                selflabel, simclr, write_config, write_env)
from tests.shapes import SHAPES, write_shapes
from utils.checkpoint import load
from utils.training import ResumeConflict


def assert_same_weights(path_a, path_b):
    a, b = load(path_a)['model'], load(path_b)['model']
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope='module')
def configs(tmp_path_factory):
    """Small runs (3 epochs, 100 generated images) of the digits configs on a folder."""
    tmp = tmp_path_factory.mktemp('resume')
    folder = tmp / 'shapes'
    write_shapes(str(folder), per_class=20)
    common = dict(train_db_name='folder', val_db_name='folder', folder=str(folder),
                  num_classes=len(SHAPES), batch_size=32, epochs=3, num_workers=0)
    os.makedirs(tmp / 'ema')
    return {
        # the original's EMA (the shadow loaded into the model after every step)
        'selflabel_ema': write_config(str(tmp / 'ema'), 'selflabel', confidence_threshold=0.5,
                                      use_ema=True, **common),
        'tmp': tmp, 'output': os.path.basename(folder_outputs('', folder)),
        'pretext': write_config(str(tmp), 'pretext', knn_every=1, **common),
        'scan': write_config(str(tmp), 'scan', **common),
        'selflabel': write_config(str(tmp), 'selflabel', confidence_threshold=0.5, **common),
    }


@pytest.mark.parametrize('step,module', [('pretext', simclr), ('scan', scan),
                                         ('selflabel', selflabel),
                                         ('selflabel_ema', selflabel)])
def test_resume_matches_uninterrupted_run(step, module, configs, monkeypatch):
    tmp, output, config, run = configs['tmp'], configs['output'], configs[step], step
    step = step.removesuffix('_ema')  # the folder the step writes
    straight, killed = tmp / f'straight-{run}', tmp / f'killed-{run}'
    env_straight, env_killed = write_env(str(tmp / run / 'a'), straight), \
        write_env(str(tmp / run / 'b'), killed)
    # both runs start from the same earlier steps (trained once, copied)
    earlier = {'pretext': [], 'scan': ['pretext'], 'selflabel': ['pretext', 'scan']}[step]
    shared = tmp / 'shared' / output
    for before in earlier:
        if not (shared / before).exists():
            env_shared = write_env(str(tmp / 'shared-env'), tmp / 'shared')
            run_step({'pretext': simclr, 'scan': scan}[before], env_shared,
                     configs[before])
        for out in (straight, killed):
            shutil.copytree(shared / before, out / output / before)

    run_step(module, env_straight, config)
    with monkeypatch.context() as m:
        kill_after_epochs(module, m, epochs_done=1)
        with pytest.raises(Killed):
            run_step(module, env_killed, config)
    checkpoint = killed / output / step / 'checkpoint.pth.tar'
    assert load(str(checkpoint))['epoch'] == 1
    run_step(module, env_killed, config)     # resumes at epoch 1
    assert load(str(checkpoint))['epoch'] == 3
    for name in ('checkpoint.pth.tar', 'model.pth.tar'):
        assert_same_weights(str(straight / output / step / name),
                            str(killed / output / step / name))


def test_changed_config_is_not_silently_resumed(configs):
    tmp = configs['tmp']
    env = write_env(str(tmp / 'changed'), tmp / 'changed-out')
    run_step(simclr, env, configs['pretext'], 'epochs=1')
    changed = r'different configuration \(changed: optimizer_kwargs\)'
    with pytest.raises(ResumeConflict, match=changed):
        run_step(simclr, env, configs['pretext'], 'epochs=2', 'optimizer_kwargs.lr=0.5')
