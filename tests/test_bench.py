"""The benchmark runs on the CPU and prints every figure it promises (benchmarks/README.md)."""
import json
import subprocess
import sys

from tests.pipeline_run import ROOT

STEPS = ('pretext', 'scan', 'selflabel')


def test_bench_quick_digits_prints_every_figure():
    result = subprocess.run(
        [sys.executable, 'benchmarks/bench.py', '--quick', '--presets', 'digits', '--steps', '1',
         '--warmup', '1', '--mining_images', '500', '--profile'],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by = {}
    for r in records:
        by.setdefault(r['figure'], []).append(r)

    for kind in ('data', 'train'):
        got = {(r['step'], r['variant']) for r in by[kind]}
        assert got == {(s, v) for s in STEPS for v in ('faithful', 'fast')}
        assert all(r['images_per_s'] > 0 and r['device'].startswith('cpu') for r in by[kind])
    assert {r['variant'] for r in by['eval']} == {'faithful', 'fast'}
    assert {r['index'] for r in by['mining']} == {'exact', 'ivf'}
    assert {(r['of'], r['step']) for r in by['speedup']} == (
        {(k, s) for k in ('data', 'train') for s in STEPS} | {('eval', 'eval')})
    assert all(r['ratio'] > 0 for r in by['speedup'])

    projections = {r['variant']: r for r in by['projection']}
    assert set(projections) == {'faithful', 'fast'}
    # the digits configs' own epochs, and a total that is the sum of its parts
    assert projections['fast']['epochs'] == {'pretext': 50, 'scan': 50, 'selflabel': 20}
    for p in projections.values():
        assert abs(sum(p['seconds'].values()) / 3600 - p['hours']) < 1e-3

    assert {(r['step'], r['variant']) for r in by['profile']} == {
        (s, v) for s in STEPS for v in ('faithful', 'fast')}
    for r in by['profile']:
        shares = [op['share'] for op in r['top']]
        assert 0 < sum(shares) <= 1.0001 and shares == sorted(shares, reverse=True)
        # convolutions are where a CNN step spends its time
        assert any('convolution' in op['op'] for op in r['top']), r['top']


def test_annotation_export_benchmark_prints_its_figures():
    result = subprocess.run([sys.executable, 'benchmarks/annotation_export.py', '--sizes', '40'],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    [record] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
    assert record['figure'] == 'export' and record['images'] == 40 and record['seconds'] > 0
