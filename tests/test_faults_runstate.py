"""The right data and the right state (issue 10): the dataset fingerprint (6), a changed number
of epochs (7), output folder locks (8), neighbours above what step 1 mined (11) and eval's
transform (13). Every case asserts its message, and where a user's image folder is involved,
that its files are byte for byte what they were."""
import json
import os
import shutil
import socket
import subprocess
import sys
import types

import pytest
import torch
from PIL import Image

import data.image_folder as image_folder
import eval as eval_script
import scan
import selflabel
import simclr
from data.digits import Digits
from data.fingerprint import DatasetChanged, compare, dataset_fingerprint
from tests.file_hashes import folder_hash
from tests.lock_holder import hold_lock
from tests.pipeline_run import (ROOT, Killed, folder_outputs, kill_after_epochs, run_eval, run_step,
                                write_config, write_env)
from tests.shapes import SHAPES, write_shapes
from utils.checkpoint import load
from utils.config import load_config
from utils.lock import FolderLocked, lock_output_folder, process_start, release_output_locks
from utils.runtime import get_args_parser, run_cli
from utils.training import ResumeConflict, build_optimizer, build_scheduler, restore_checkpoint


def forget_folder_scans():
    """A new process scans the folder afresh; in this one, drop the cached scans."""
    image_folder.scan_folder.cache_clear()
    image_folder.working_copies.cache_clear()


def cli_message(module, *argv, parser=None):
    """What run_cli prints when `module.main` fails with a user error (it exits 1)."""
    with pytest.raises(SystemExit) as end:
        run_cli(module.main, parser or get_args_parser('test'), list(argv))
    return str(end.value.code)


class FolderRun:
    """Steps 1-3 of the digits configs, 1 epoch each, on 100 generated images in a folder."""

    def __init__(self, tmp):
        self.folder = tmp / 'shapes'
        write_shapes(str(self.folder), per_class=20)
        self.before = folder_hash(self.folder)
        self.env = write_env(str(tmp / 'env'), tmp / 'out')
        self.out = folder_outputs(tmp / 'out', self.folder)
        common = dict(train_db_name='folder', val_db_name='folder', folder=str(self.folder),
                      num_classes=len(SHAPES), batch_size=32, epochs=1, num_workers=0)
        self.configs = {
            'pretext': write_config(str(tmp), 'pretext', **common),
            'scan': write_config(str(tmp), 'scan', **common),
            'selflabel': write_config(str(tmp), 'selflabel', confidence_threshold=0.5, **common)}

    def argv(self, step, *opts):
        return ['--config_env', self.env, '--config_exp', self.configs[step], '--opts', *opts]


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    run = FolderRun(tmp_path_factory.mktemp('faults'))
    for step, module in (('pretext', simclr), ('scan', scan), ('selflabel', selflabel)):
        run_step(module, run.env, run.configs[step])
    return run


# 6. The right images ---------------------------------------------------------------------------

def write_files(folder, names):
    os.makedirs(folder, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(bytes([i]) * (10 + i))  # sizes differ: renames are traceable


def files_fingerprint(folder):
    paths = sorted(str(p) for p in folder.iterdir())
    return dataset_fingerprint(types.SimpleNamespace(paths=paths, folder=str(folder)))


def test_compare_says_what_changed_in_a_folder(tmp_path):
    folder = tmp_path / 'f'
    write_files(folder, ['a.png', 'b.png', 'c.png', 'd.png', 'e.png', 'f.png'])
    before = files_fingerprint(folder)
    os.rename(folder / 'a.png', folder / 'z.png')                      # renamed
    os.rename(folder / 'b.png', folder / 't')                          # b and c swapped
    os.rename(folder / 'c.png', folder / 'b.png')
    os.rename(folder / 't', folder / 'c.png')
    (folder / 'd.png').write_bytes(b'other content')                  # modified
    os.remove(folder / 'e.png')                                        # removed
    (folder / 'g.png').write_bytes(b'new')                             # added
    lines = compare(before, files_fingerprint(folder))
    assert lines == [
        "1 file renamed: a.png -> z.png",
        "2 files now hold what another file held (swapped or moved within the folder): "
        "b.png (was c.png), c.png (was b.png)",
        "1 file added: g.png",
        "1 file removed: e.png",
        "1 file modified since step 1 (size or modification time): d.png"]
    assert compare(before, before) == []


def test_builtin_fingerprint_sees_labels_images_and_length():
    digits = Digits('test')
    before = dataset_fingerprint(digits)
    digits.targets = digits.targets[::-1].copy()
    assert compare(before, dataset_fingerprint(digits)) == ["the labels changed"]
    digits.data = digits.data[::-1].copy()
    assert "the images changed" in compare(before, dataset_fingerprint(digits))
    assert compare(before, dataset_fingerprint(Digits('train')))[0] == \
        "number of images 1437, was 360"


def test_folders_of_one_name_get_their_own_outputs(tmp_path):
    env = write_env(str(tmp_path), tmp_path / 'out')
    exp = os.path.join(ROOT, 'configs/pretext/simclr_folder.yml')
    (tmp_path / 'a' / 'photos').mkdir(parents=True)
    (tmp_path / 'b' / 'photos').mkdir(parents=True)
    os.symlink(tmp_path / 'a' / 'photos', tmp_path / 'link')
    dirs = [load_config(env, exp, [f'folder={tmp_path / p}']).paths.pretext_dir
            for p in ('a/photos', 'b/photos', 'link')]
    assert dirs[0] != dirs[1] and dirs[0] == dirs[2]  # a link is the folder it points to
    assert all(os.path.basename(os.path.dirname(d)).startswith('folder-photos-') for d in dirs)


def rename_one(folder):
    os.rename(folder / 'cross' / 'cross_000.png', folder / 'cross' / 'cross_999.png')
    return lambda: os.rename(folder / 'cross' / 'cross_999.png', folder / 'cross' / 'cross_000.png')


def swap_two(folder):
    a, b, t = folder / 'hbar' / 'hbar_001.png', folder / 'vbar' / 'vbar_001.png', folder / 't'

    def swap():
        os.rename(a, t)
        os.rename(b, a)
        os.rename(t, b)
    swap()
    return swap


def modify_one(folder):
    path = folder / 'square' / 'square_002.png'
    data, st = path.read_bytes(), os.stat(path)
    Image.new('RGB', (16, 16), (255, 255, 255)).save(path)

    def restore():
        path.write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return restore


@pytest.mark.parametrize('change, step, expected', [
    (rename_one, 'scan', "1 file renamed: cross/cross_000.png -> cross/cross_999.png"),
    (swap_two, 'selflabel', "2 files now hold what another file held (swapped or moved within "
                            "the folder): hbar/hbar_001.png (was vbar/vbar_001.png), "
                            "vbar/vbar_001.png (was hbar/hbar_001.png)"),
    (modify_one, 'eval', "1 file modified since step 1 (size or modification time): "
                         "square/square_002.png"),
])
def test_later_steps_refuse_images_changed_since_step_1(run, change, step, expected):
    undo = change(run.folder)
    forget_folder_scans()
    try:
        if step == 'eval':
            message = cli_message(eval_script, *run.argv('selflabel'),
                                  parser=eval_script.get_eval_parser())
        else:
            message = cli_message({'scan': scan, 'selflabel': selflabel}[step], *run.argv(step))
    finally:
        undo()
        forget_folder_scans()
    assert "the images changed since step 1 (simclr.py) recorded them" in message
    assert f"train and val split ({run.folder}):\n    {expected}" in message
    assert f"The neighbours and models in {run.out} belong to the old images" in message
    assert folder_hash(run.folder) == run.before


def test_resuming_step_1_on_changed_images_is_refused(run, tmp_path, monkeypatch):
    folder = tmp_path / 'copy'
    shutil.copytree(run.folder, folder)
    env = write_env(str(tmp_path), tmp_path / 'out')
    with monkeypatch.context() as m:
        kill_after_epochs(simclr, m, 1)
        with pytest.raises(Killed):
            run_step(simclr, env, run.configs['pretext'], f'folder={folder}', 'epochs=2')
    os.remove(folder / 'square' / 'square_003.png')
    forget_folder_scans()
    with pytest.raises(DatasetChanged) as error:
        run_step(simclr, env, run.configs['pretext'], f'folder={folder}', 'epochs=2')
    assert "1 file removed: square/square_003.png" in str(error.value)
    assert "Resuming step 1 on other images would mix them up" in str(error.value)


# 7. A changed number of epochs -----------------------------------------------------------------

def schedule_lrs(epochs, start_state=None, done=0):
    """lr of each epoch from `done` on, of a cosine run of `epochs` (restored from a state)."""
    cfg = types.SimpleNamespace(optimizer='sgd', scheduler='cosine', epochs=epochs,
                                optimizer_kwargs=types.SimpleNamespace(
                                    lr=0.4, momentum=0.9, weight_decay=0.0, nesterov=False),
                                scheduler_kwargs=types.SimpleNamespace(lr_decay_rate=0.1))
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = build_scheduler(cfg, optimizer)
    if start_state is not None:
        restore_checkpoint({**start_state, 'model': model.state_dict()}, model, optimizer,
                           scheduler)
    lrs = []
    for _ in range(done, epochs):
        lrs.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        scheduler.step()
    return lrs, {'optimizer': optimizer.state_dict(), 'scheduler': scheduler.state_dict(),
                 'epoch': epochs}


def test_resume_with_more_epochs_follows_the_new_schedule_exactly():
    _, after_3_of_5 = schedule_lrs(3)  # a run of epochs=3, then rerun with epochs=8
    resumed, _ = schedule_lrs(8, after_3_of_5, done=3)
    straight, _ = schedule_lrs(8)
    assert resumed == straight[3:]  # bit for bit


def test_more_epochs_after_a_kill_equal_an_uninterrupted_run(run, tmp_path, monkeypatch):
    """Cosine schedule: killed after epoch 1 of epochs=2, rerun with epochs=3 (the first epoch's
    lr is the same under both): same weights and lrs as a straight epochs=3 run."""
    straight_env = write_env(str(tmp_path / 'a'), tmp_path / 'a' / 'out')
    resumed_env = write_env(str(tmp_path / 'b'), tmp_path / 'b' / 'out')
    run_step(simclr, straight_env, run.configs['pretext'], 'epochs=3')
    with monkeypatch.context() as m:
        kill_after_epochs(simclr, m, 1)
        with pytest.raises(Killed):
            run_step(simclr, resumed_env, run.configs['pretext'], 'epochs=2')
    run_step(simclr, resumed_env, run.configs['pretext'], 'epochs=3')
    outputs = [folder_outputs(tmp_path / x / 'out', run.folder) for x in 'ab']
    a, b = (load(os.path.join(o, 'pretext', 'model.pth.tar'))['model'] for o in outputs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    logs = [[json.loads(line)['lr'] for line in open(os.path.join(o, 'pretext', 'log.jsonl'))]
            for o in outputs]
    assert logs[0] == logs[1] and len(logs[0]) == 3


def test_fewer_epochs_than_done_is_refused(run, tmp_path):
    env = write_env(str(tmp_path), tmp_path / 'out')
    run_step(simclr, env, run.configs['pretext'], 'epochs=2')
    with pytest.raises(ResumeConflict) as error:
        run_step(simclr, env, run.configs['pretext'], 'epochs=1')
    checkpoint = os.path.join(folder_outputs(tmp_path / 'out', run.folder), 'pretext',
                              'checkpoint.pth.tar')
    assert str(error.value) == (
        f"{checkpoint} holds 2 trained epochs, more than epochs=1: set epochs to 2 or more to go "
        f"on from it, or delete {checkpoint} and {checkpoint}.prev to train 1 epochs from the "
        f"start")


def test_later_steps_do_not_resume_from_the_outputs_of_an_earlier_run(run, tmp_path):
    """Step 1 run again from the start (its checkpoints deleted) gives other weights and
    neighbours: steps 2 and 3 refuse to go on from checkpoints trained on the old ones."""
    env = write_env(str(tmp_path), tmp_path / 'out')
    outputs = folder_outputs(tmp_path / 'out', run.folder)
    for step, module in (('pretext', simclr), ('scan', scan), ('selflabel', selflabel)):
        run_step(module, env, run.configs[step])

    def rerun(step, module, *opts):
        for name in ('checkpoint.pth.tar', 'checkpoint.pth.tar.prev'):
            if os.path.exists(os.path.join(outputs, step, name)):
                os.remove(os.path.join(outputs, step, name))
        run_step(module, env, run.configs[step], *opts)

    rerun('pretext', simclr, 'epochs=2')  # trained again from the start: other weights
    checkpoint = os.path.join(outputs, 'scan', 'checkpoint.pth.tar')
    with pytest.raises(ResumeConflict) as error:
        run_step(scan, env, run.configs['scan'])
    assert str(error.value).startswith(f"{checkpoint} was trained from other inputs: "
                                       f"pretext/model.pth.tar, ")
    assert str(error.value).endswith(f"delete {checkpoint} and {checkpoint}.prev.")
    rerun('scan', scan)
    with pytest.raises(ResumeConflict, match=r"from other inputs: scan/model\.pth\.tar changed"):
        run_step(selflabel, env, run.configs['selflabel'])
    rerun('selflabel', selflabel)  # as the message says: the step starts over


# 8. One run at a time per output folder --------------------------------------------------------

def test_a_second_run_into_a_step_folder_is_refused_naming_the_holder(run, capsys):
    scan_dir = os.path.join(run.out, 'scan')
    holder = hold_lock(scan_dir)
    try:
        message = cli_message(scan, *run.argv('scan'))
    finally:
        holder.kill()  # SIGKILL: the lock file stays behind, naming a dead process
        holder.wait()
    assert f"another run is writing {os.path.realpath(scan_dir)} (pid {holder.pid} on " \
           f"{socket.gethostname()}, running since " in message
    assert f": {os.path.basename(sys.executable)} -c {scan_dir})" in message  # its command
    assert f"if no such run is going on, delete {os.path.realpath(scan_dir)}/.lock" in message
    capsys.readouterr()
    run_step(scan, run.env, run.configs['scan'])  # the holder is gone: its lock is stale
    assert f"taking over the lock of {os.path.realpath(scan_dir)} from a run that is no " \
           f"longer running (pid {holder.pid}" in capsys.readouterr().out
    assert not os.path.exists(os.path.join(scan_dir, '.lock'))
    assert folder_hash(run.folder) == run.before


def test_eval_locks_the_eval_folder_it_writes(run):
    eval_dir = os.path.join(run.out, 'selflabel', 'eval')
    holder = hold_lock(eval_dir)
    try:
        message = cli_message(eval_script, *run.argv('selflabel'),
                              parser=eval_script.get_eval_parser())
    finally:
        holder.stdin.close()
        holder.wait()
    assert f"another run is writing {os.path.realpath(eval_dir)} (pid {holder.pid}" in message
    assert not os.path.exists(os.path.join(eval_dir, '.lock'))  # released on a clean exit


def test_a_lock_file_naming_a_live_process_is_respected_a_dead_one_taken_over(tmp_path, capsys):
    sleeper = subprocess.Popen(['sleep', '60'])
    lock = tmp_path / '.lock'
    lock.write_text(json.dumps({'pid': sleeper.pid, 'host': socket.gethostname(),
                                'start': process_start(sleeper.pid), 'since': 'then',
                                'command': 'sleep 60'}))
    try:
        with pytest.raises(FolderLocked, match=f"pid {sleeper.pid} on .*: sleep 60"):
            lock_output_folder(str(tmp_path))
    finally:
        sleeper.kill()
        sleeper.wait()
    lock_output_folder(str(tmp_path))
    assert f"no longer running (pid {sleeper.pid}" in capsys.readouterr().out
    assert json.loads(lock.read_text())['pid'] == os.getpid()
    release_output_locks()
    assert not lock.exists()


# 11. num_neighbors above what step 1 mined -----------------------------------------------------

def test_more_neighbours_than_mined_says_what_to_do(run):
    message = cli_message(scan, *run.argv('scan', 'num_neighbors=30'))
    mined = os.path.join(run.out, 'pretext', 'topk-train-neighbors.npy')
    assert (f"{run.configs['scan']}: num_neighbors=30, but step 1 mined 20 per image ({mined}): "
            f"lower it to 20 or less, or rerun simclr.py with --opts num_neighbors=30 (it only "
            f"mines again)") in message
    assert folder_hash(run.folder) == run.before


# 13. eval preprocesses as training did ---------------------------------------------------------

def test_eval_uses_the_transform_the_model_was_trained_with(run, capsys):
    plain = run_eval(run.env, run.configs['selflabel'])
    capsys.readouterr()
    other = run_eval(run.env, run.configs['selflabel'], '--opts',
                     'transformation_kwargs.crop_size=12', 'transformation_kwargs.resize=40',
                     'transformation_kwargs.normalize.mean=[0.5,0.5,0.5]')
    said = capsys.readouterr().out
    model = os.path.join(run.out, 'selflabel', 'model.pth.tar')
    assert f"eval uses the transform the model {model} was trained with; ignored from the eval " \
           f"config: transformation_kwargs.crop_size=12 (the model's: 16), " in said
    assert "transformation_kwargs.normalize.mean=[0.5, 0.5, 0.5] (the model's: [0.305, 0.305, " \
           "0.305]), transformation_kwargs.resize=40 (the model's: None)" in said
    assert other['cluster_sizes'] == plain['cluster_sizes'] and other['acc'] == plain['acc']
    assert folder_hash(run.folder) == run.before
