"""Files and messages (issue 10): what kills leave behind (9), out-of-range values (10), the
tracebacks that are now messages (11) and progress bars off a terminal (12)."""
import errno
import io
import json
import os
import pathlib
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
import yaml

import eval as eval_script
import simclr
from annotation.export import AnnotationError, read_names
from models import ContrastiveModel, build_backbone
from tests.file_hashes import folder_hash
from tests.pipeline_run import ROOT, folder_outputs, write_config, write_env
from tests.shapes import SHAPES, write_shapes
from utils.checkpoint import (CheckpointError, UnsafeCheckpoint, atomic_save, load,
                              load_with_fallback)
from utils.config import COMMON_SCHEMA, RANGES, STEP_SCHEMAS, UNBOUNDED, ConfigError, load_config
from utils.lock import lock_output_folder, release_output_locks
from utils.progress import progress
from utils.runtime import get_args_parser, run_cli
from utils.training import RunLog

PNG_BYTES = b'\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02'
DIGITS = {step: os.path.join(ROOT, 'configs', step, f'{prefix}_digits.yml') for step, prefix in
          (('pretext', 'simclr'), ('scan', 'scan'), ('selflabel', 'selflabel'))}


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    """100 generated images in a folder, the digits pretext config pointed at it, and the
    folder's hash (to show nothing in it changes)."""
    tmp = tmp_path_factory.mktemp('shapes')
    folder = tmp / 'shapes'
    write_shapes(str(folder), per_class=20)
    config = write_config(str(tmp), 'pretext', train_db_name='folder', val_db_name='folder',
                          folder=str(folder), num_classes=len(SHAPES), batch_size=32,
                          num_workers=0)
    return types.SimpleNamespace(folder=folder, config=config, before=folder_hash(folder))


def pretext_dir(root, shapes):
    return os.path.join(folder_outputs(root, shapes.folder), 'pretext')


def cli_message(module, *argv, parser=None):
    with pytest.raises(SystemExit) as end:
        run_cli(module.main, parser or get_args_parser('test'), list(argv))
    return str(end.value.code)


# 9. What kills leave behind --------------------------------------------------------------------

def test_the_next_run_removes_temporaries_of_killed_writers_and_nothing_else(tmp_path, capsys):
    for name in ('.tmp-abc123.pth', '.tmp-x.txt', 'notes.txt', 'checkpoint.pth.tar'):
        (tmp_path / name).write_bytes(b'x')
    lock_output_folder(str(tmp_path))
    release_output_locks()
    assert sorted(os.listdir(tmp_path)) == ['checkpoint.pth.tar', 'notes.txt']
    assert "removed 2 temporary files left by a killed run" in capsys.readouterr().out


def test_the_log_is_rewritten_to_the_epochs_of_the_checkpoint(tmp_path):
    path = tmp_path / 'log.jsonl'
    records = [{'epoch': 1, 'loss': 2.5}, {'epoch': 2, 'loss': 2.25}]
    # epoch 2 logged twice (killed after its line, rerun), epoch 3 logged but not checkpointed,
    # and a line cut short
    path.write_text(''.join(json.dumps(r) + '\n' for r in records + records[1:])
                    + '{"epoch": 3, "loss": 2.0}\n{"epoch": 4, "lo')
    log = RunLog(str(path))
    log.start({'epoch': 2, 'log': records})
    assert [json.loads(line) for line in path.read_text().splitlines()] == records
    log.write({'epoch': 3, 'loss': np.float64(2.0)})
    assert log.records[-1] == {'epoch': 3, 'loss': 2.0}
    assert path.read_text().splitlines()[-1] == '{"epoch": 3, "loss": 2.0}'


def test_a_checkpoint_without_records_keeps_the_first_line_of_each_epoch(tmp_path):
    path = tmp_path / 'log.jsonl'
    path.write_text('{"epoch": 1, "a": 1}\n{"epoch": 1, "a": 2}\n{"epoch": 2, "a": 3}\n{"ep')
    RunLog(str(path)).start({'epoch': 1})
    assert path.read_text() == '{"epoch": 1, "a": 1}\n'


def test_a_fresh_start_empties_an_old_log(tmp_path):
    path = tmp_path / 'log.jsonl'
    path.write_text('{"epoch": 1}\n')
    RunLog(str(path)).start(None)
    assert path.read_text() == ''


def two_checkpoints(folder):
    path = str(folder / 'checkpoint.pth.tar')
    for epoch in (1, 2):
        atomic_save({'epoch': epoch, 'w': torch.full((100,), float(epoch))}, path,
                    keep_previous=True)
    return path


@pytest.mark.parametrize('damage, problem', [
    (lambda data: data[:len(data) // 2], "is truncated: the zip archive ends early"),
    (lambda data: b'', "is empty (0 bytes)"),
    (lambda data: b'hello', "is not a PyTorch checkpoint"),
])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage, problem):
    path = two_checkpoints(tmp_path)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(damage(data))
    said = []
    state = load_with_fallback(path, report=said.append)
    assert state['epoch'] == 1 and len(said) == 1
    assert said[0].startswith(f"{path} {problem}")
    assert said[0].endswith(f"; resuming from the previous checkpoint {path}.prev")
    assert load(path)['epoch'] == 1 and not os.path.exists(path + '.prev')  # moved back


def test_only_a_previous_checkpoint_after_a_kill_between_renames(tmp_path):
    path = two_checkpoints(tmp_path)
    os.replace(path, path + '.prev')  # what a kill between the two renames leaves
    said = []
    assert load_with_fallback(path, report=said.append)['epoch'] == 2
    assert said == [f"{path} does not exist; resuming from the previous checkpoint {path}.prev"]


def test_both_checkpoints_damaged_says_exactly_what_to_delete(tmp_path):
    path = two_checkpoints(tmp_path)
    for p in (path, path + '.prev'):
        open(p, 'wb').close()
    with pytest.raises(CheckpointError) as error:
        load_with_fallback(path)
    assert str(error.value) == (
        f"cannot resume: {path} is empty (0 bytes); {path}.prev is empty (0 bytes). To start "
        f"this step over, delete them:\n  rm '{path}' '{path}.prev'")


def test_a_damaged_checkpoint_does_not_block_a_step(tmp_path, capsys, shapes):
    """A step whose checkpoint was cut short resumes from the previous one and finishes."""
    env = write_env(str(tmp_path), tmp_path / 'out')
    argv = ['--config_env', env, '--config_exp', shapes.config, '--opts', 'epochs=2']
    run_cli(simclr.main, get_args_parser('test'), argv)
    checkpoint = pathlib.Path(pretext_dir(tmp_path / 'out', shapes)) / 'checkpoint.pth.tar'
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    capsys.readouterr()
    run_cli(simclr.main, get_args_parser('test'), argv + ['epochs=3'])
    out = capsys.readouterr().out
    assert f"{checkpoint} is truncated" in out and "resuming from the previous checkpoint" in out
    assert load(str(checkpoint))['epoch'] == 3
    log = [json.loads(line)['epoch'] for line in open(checkpoint.parent / 'log.jsonl')]
    assert log == [1, 2, 3]
    assert folder_hash(shapes.folder) == shapes.before


# 11. Files that are not what they should be, a full disk, an unwritable root_dir --------------

@pytest.mark.parametrize('content, problem', [
    (b'epochs: 3\n', "is not a PyTorch checkpoint (those are zip archives written by torch.save;"
                     " this file starts with b'epochs: 3\\n')"),
    (b'', "is empty (0 bytes)"),
])
def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path, content, problem):
    path = tmp_path / 'model.pth.tar'
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        load(str(path))
    assert str(error.value) == f"{path} {problem}"


def test_a_pickle_of_arbitrary_objects_is_refused_plainly(tmp_path):
    path = tmp_path / 'model.pth.tar'
    torch.save({'model': io.StringIO('x')}, path)
    with pytest.raises(UnsafeCheckpoint) as error:
        load(str(path))
    assert "holds Python objects other than weights" in str(error.value)
    assert not str(error.value).startswith('Weights only load failed')


def test_eval_of_a_model_file_that_is_not_one(tmp_path):
    env = write_env(str(tmp_path), tmp_path / 'out')
    fake = tmp_path / 'model.pth.tar'
    fake.write_text('not a model\n')
    message = cli_message(eval_script, '--config_env', env, '--config_exp', DIGITS['scan'],
                          '--model', str(fake), parser=eval_script.get_eval_parser())
    assert f"{fake} is not a PyTorch checkpoint" in message and 'Unpickling' not in message


def test_pretrained_weights_that_are_not_a_checkpoint(tmp_path):
    path = tmp_path / 'moco_v2_800ep_pretrain.pth.tar'
    np.save(path, np.zeros(3))  # a numpy file under a checkpoint's name
    os.replace(str(path) + '.npy', path)
    with pytest.raises(CheckpointError) as error:
        simclr.import_pretrained(ContrastiveModel(build_backbone('small')), str(path))
    assert str(error.value).startswith(
        f"{path} is not a PyTorch checkpoint (those are zip archives written by torch.save; this "
        f"file starts with b\"\\x93NUMPY")


def full_disk_save(after_bytes):
    """A torch.save whose file fills the disk after some bytes."""
    def save(obj, f):
        f.write(b'\0' * after_bytes)
        raise OSError(errno.ENOSPC, 'No space left on device')
    return save


def test_a_full_disk_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = two_checkpoints(tmp_path)
    monkeypatch.setattr(torch, 'save', full_disk_save(4096))
    with pytest.raises(CheckpointError) as error:
        atomic_save({'epoch': 3}, path, keep_previous=True)
    assert str(error.value).startswith(f"could not write {path}: the disk is full (")
    assert "Nothing was replaced: the previous checkpoint.pth.tar, if any, is intact. Free " \
           "some space and rerun the same command; it resumes from the last checkpoint." \
           in str(error.value)
    assert load(path)['epoch'] == 2 and load(path + '.prev')['epoch'] == 1
    assert sorted(os.listdir(tmp_path)) == ['checkpoint.pth.tar', 'checkpoint.pth.tar.prev']


def test_a_full_disk_during_a_step_is_a_message(tmp_path, monkeypatch, shapes):
    env = write_env(str(tmp_path), tmp_path / 'out')
    monkeypatch.setattr(torch, 'save', full_disk_save(100))
    message = cli_message(simclr, '--config_env', env, '--config_exp', shapes.config,
                          '--opts', 'epochs=1')
    assert "the disk is full" in message and 'Traceback' not in message
    # the log line of epoch 1 is there, its checkpoint not: the next run starts the log afresh
    assert sorted(os.listdir(pretext_dir(tmp_path / 'out', shapes))) == [
        'fingerprint.json', 'folder-check.json', 'log.jsonl', 'warnings.json']
    assert folder_hash(shapes.folder) == shapes.before


@pytest.mark.parametrize('cause, reason', [('file', 'Not a directory'),
                                           ('permission', 'Permission denied')])
def test_an_unwritable_root_dir_is_a_message(tmp_path, monkeypatch, cause, reason):
    root = tmp_path / 'a' / 'out'
    if cause == 'file':  # root_dir below a file
        (tmp_path / 'a').write_text('')
    else:  # the tests may run as root, who may write anywhere: refuse as a mode would
        real_makedirs = os.makedirs

        def refuse(path, *args, **kwargs):
            if str(path).startswith(str(root)):
                raise PermissionError(errno.EACCES, 'Permission denied', str(path))
            return real_makedirs(path, *args, **kwargs)
        monkeypatch.setattr(os, 'makedirs', refuse)
    env = write_env(str(tmp_path / 'env'), root)
    message = cli_message(simclr, '--config_env', env, '--config_exp', DIGITS['pretext'],
                          '--opts', 'epochs=1')
    assert f"cannot write outputs into {root}/digits/pretext: {reason}. Set root_dir in {env} " \
           f"(now {root}) to a folder you can write, or pass --opts root_dir=PATH." in message


def test_config_and_names_files_that_are_not_text(tmp_path):
    exp = tmp_path / 'exp.yml'
    exp.write_bytes(PNG_BYTES)
    env = write_env(str(tmp_path), tmp_path / 'out')
    message = cli_message(simclr, '--config_env', env, '--config_exp', str(exp))
    assert f"config error: {exp}: not a text file (byte 0x89 at offset 0 is not UTF-8 text): a " \
           f"config is a YAML text file" in message
    names = tmp_path / 'names.yml'
    names.write_bytes(PNG_BYTES)
    with pytest.raises(AnnotationError, match=r"names.yml: not a text file \(byte 0x89 at offset "
                                              r"0 is not UTF-8 text\): a names file is YAML text"):
        read_names(str(names), 3)


def test_bad_yaml_in_opts_is_a_message():
    message = cli_message(simclr, '--config_env', os.path.join(ROOT, 'configs', 'env.yml'),
                          '--config_exp',
                          DIGITS['pretext'], '--opts', 'augmentation_kwargs.random_resized_crop.'
                                                       'scale=[0.2, 1.0')
    assert "config error: --opts: the value of 'augmentation_kwargs.random_resized_crop.scale' " \
           "is not valid YAML (expected ',' or ']', but got '<stream end>'): '[0.2, 1.0'; quote " \
           "text that holds :, #, [ or {" in message


@pytest.mark.parametrize('device, expected', [
    ('cuda', "device 'cuda' was asked for but CUDA is not available here; use --opts "
             "device=auto or device=cpu"),
    ('gpu', "key 'device' must be auto, cpu, cuda or cuda:N, got 'gpu'"),
])
def test_a_device_that_is_not_here_is_a_message(tmp_path, device, expected):
    if device == 'cuda' and torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    env = write_env(str(tmp_path), tmp_path / 'out')
    message = cli_message(simclr, '--config_env', env, '--config_exp', DIGITS['pretext'],
                          '--opts', f'device={device}')
    assert expected in message and 'Traceback' not in message


# 10. Allowed ranges ----------------------------------------------------------------------------

@pytest.mark.parametrize('step, opt, expected', [
    ('pretext', 'epochs=0', "key 'epochs' must be >= 1 (0 only with pretrained_weights, where "
                            "step 1 trains nothing), got 0"),
    ('scan', 'epochs=-1', "key 'epochs' must be >= 1 (0 only with pretrained_weights, where "
                          "step 1 trains nothing), got -1"),
    ('pretext', 'batch_size=0', "key 'batch_size' must be >= 1, got 0"),
    ('scan', 'batch_size=-8', "key 'batch_size' must be >= 1, got -8"),
    ('scan', 'num_neighbors=0', "key 'num_neighbors' must be >= 1, got 0"),
    ('pretext', 'num_neighbors_val=0', "key 'num_neighbors_val' must be >= 1, got 0"),
    ('scan', 'num_heads=0', "key 'num_heads' must be >= 1, got 0"),
    ('pretext', 'optimizer_kwargs.lr=0', "key 'optimizer_kwargs.lr' must be > 0, got 0"),
    ('pretext', 'num_workers=-1', "key 'num_workers' must be >= 0, got -1"),
    ('selflabel', 'confidence_threshold=1.0', "key 'confidence_threshold' must be in [0, 1), "
                                              "got 1.0"),
    ('selflabel', 'ema_alpha=0', "key 'ema_alpha' must be in (0, 1), got 0"),
    ('pretext', 'transformation_kwargs.crop_size=0',
     "key 'transformation_kwargs.crop_size' must be in [1, 4096], got 0"),
    ('pretext', 'augmentation_kwargs.random_resized_crop.scale=[0.5, 0.2]',
     "key 'augmentation_kwargs.random_resized_crop.scale' must be a list [low, high] with "
     "0 < low <= high <= 1, got [0.5, 0.2]"),
    ('scan', 'criterion_kwargs.entropy_weight=-5', "key 'criterion_kwargs.entropy_weight' must "
                                                   "be >= 0, got -5"),
    ('pretext', 'criterion_kwargs.temperature=0', "key 'criterion_kwargs.temperature' must be "
                                                  "> 0, got 0"),
    ('pretext', 'transformation_kwargs.normalize.std=[0.3, 0, 0.3]',
     "key 'transformation_kwargs.normalize.std' must be a list of 1 or 3 numbers > 0, got "
     "[0.3, 0, 0.3]"),
    ('pretext', 'num_classes=0', "key 'num_classes' must be in [1, 100000], got 0"),
])
def test_out_of_range_values_name_key_file_and_range(step, opt, expected):
    with pytest.raises(ConfigError) as error:
        load_config(os.path.join(ROOT, 'configs', 'env.yml'), DIGITS[step], [opt])
    assert str(error.value) == f"{DIGITS[step]} (set by --opts): {expected}"


def test_a_range_in_the_file_names_the_file(tmp_path):
    content = yaml.safe_load(open(DIGITS['scan']))
    content['num_heads'] = 0
    exp = tmp_path / 'scan.yml'
    exp.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as error:
        load_config(os.path.join(ROOT, 'configs', 'env.yml'), str(exp))
    assert str(error.value) == f"{exp}: key 'num_heads' must be >= 1, got 0"


def test_epochs_zero_is_fine_where_step_1_trains_nothing(tmp_path):
    cfg = load_config(os.path.join(ROOT, 'configs', 'env.yml'),
                      os.path.join(ROOT, 'configs', 'pretext', 'moco_imagenet_50.yml'))
    assert cfg.epochs == 0 and cfg.pretrained_weights


def numeric_keys(schema, prefix=''):
    for key, spec in schema.items():
        if isinstance(spec, dict):
            yield from numeric_keys(spec, prefix + key + '.')
        elif set(spec.types) & {int, float, list}:
            yield prefix + key


def test_every_numeric_key_has_a_range():
    keys = set(numeric_keys(COMMON_SCHEMA))
    for schema in STEP_SCHEMAS.values():
        keys |= set(numeric_keys(schema))
    # epochs: check_epochs; num_classes_range: check_num_classes
    assert sorted(keys - set(RANGES) - UNBOUNDED - {'epochs', 'num_classes_range'}) == []


# 12. Progress bars only on a terminal ----------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_draw_on_a_terminal_only():
    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        bar = progress(range(3), desc='x', file=stream)
        list(bar)
        bar.set_postfix(loss='1.0')
        bar.close()
        assert bool(stream.getvalue()) == drawn


def test_a_redirected_run_prints_one_line_per_epoch(tmp_path, shapes):
    env = write_env(str(tmp_path), tmp_path / 'out')
    result = subprocess.run([sys.executable, 'simclr.py', '--config_env', env, '--config_exp',
                             shapes.config, '--opts', 'epochs=2'],
                            cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert '\r' not in output and 'it/s' not in output
    assert [line.split()[1] for line in output.splitlines() if line.startswith('epoch ')] == \
        ['1', '2']
    assert folder_hash(shapes.folder) == shapes.before
