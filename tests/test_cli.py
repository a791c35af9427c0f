"""What a user sees when something is wrong: one clear message, exit status 1, no traceback."""
import os
import subprocess
import sys

import pytest
from torchvision import datasets

import scan
import simclr
from tests.pipeline_run import ROOT, write_env
from utils.runtime import get_args_parser, run_cli


def run_script(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_config_error_is_one_line_without_traceback(tmp_path):
    bad = tmp_path / 'bad.yml'
    bad.write_text(open(os.path.join(ROOT, 'configs/pretext/simclr_digits.yml')).read()
                   + 'epoch: 3\n')
    result = run_script('simclr.py', '--config_env', 'configs/env.yml', '--config_exp', str(bad))
    assert result.returncode == 1
    assert f"config error: {bad}: unknown key 'epoch' (did you mean 'epochs'?)" in result.stderr
    assert 'Traceback' not in result.stderr


def run_cli_with(module, *argv):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(module.main, get_args_parser('test'), list(argv))
    return str(exit_info.value.code)


def test_cifar10_offline_says_it_cannot_be_downloaded(tmp_path, monkeypatch):
    # The published command with the real config; the URL points at a closed local port so the
    # test never touches the network.
    monkeypatch.setattr(datasets.CIFAR10, 'url', 'http://127.0.0.1:9/cifar-10-python.tar.gz')
    env = write_env(str(tmp_path), tmp_path / 'out')
    message = run_cli_with(simclr, '--config_env', env, '--config_exp',
                           os.path.join(ROOT, 'configs/pretext/simclr_cifar10.yml'),
                           '--opts', 'epochs=1')
    assert 'CIFAR-10 is not in' in message and 'could not be downloaded' in message
    assert 'cifar-10-python.tar.gz (md5 c58f30108f718f92721af3b95e74349a)' in message
    assert str(tmp_path / 'data' / 'cifar-10') in message


def test_scan_before_pretext_says_what_to_run(tmp_path):
    env = write_env(str(tmp_path), tmp_path / 'out')
    message = run_cli_with(scan, '--config_env', env, '--config_exp',
                           os.path.join(ROOT, 'configs/scan/scan_digits.yml'))
    assert 'topk-train-neighbors.npy is missing: run simclr.py' in message
