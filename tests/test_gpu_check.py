"""benchmarks/gpu_check.sh on a machine without CUDA: it runs, says what it skips and why, and
still writes its JSON (the CUDA parts run on a GPU machine)."""
import json
import os
import subprocess
import sys

import pytest
import torch

from tests.pipeline_run import ROOT


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU behaviour')
def test_gpu_check_skips_cleanly_without_cuda(tmp_path):
    out = tmp_path / 'figures.json'
    result = subprocess.run(['bash', 'benchmarks/gpu_check.sh', '--deps', str(tmp_path / 'deps'),
                             '--out', str(out)], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, 'PYTHON': sys.executable})
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'skipping the CUDA tests, the benchmark and the digits run: no CUDA' in result.stdout
    report = json.loads(out.read_text())
    assert report['environment']['cuda'] is False
    assert report['environment']['torch'] == torch.__version__
    assert report['skipped'].startswith('no CUDA device here')
    assert 'cuda_tests' not in report and 'bench' not in report
