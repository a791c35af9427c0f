"""Everything only a GPU can show, in one run of at most about 8 minutes, written as one JSON:

1. tests/test_cuda.py (bf16 autocast in each step, channels_last, fused optimizers, the fast data
   path on the device, mining with faiss-gpu where installed and the blocked fallback where not,
   one torchrun process with NCCL);
2. benchmarks/bench.py on the cifar-10, stl-10 and imagenet presets (faithful vs fast images/s,
   the projected CIFAR-10 pipeline), one preset at a time, each with its own time limit;
3. the digits pipeline (three steps + eval) with device=cuda precision=bf16
   fast_augmentation=true: seconds per step and the scores.

    bash benchmarks/gpu_check.sh [--out FILE] [--deps DIR] [--budget SECONDS]

Run by benchmarks/gpu_check.sh (which sets the interpreter and the dependency folder). Without
CUDA every part is skipped with the reason, so the script can be checked on a CPU machine.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_PRESETS = ('cifar-10', 'stl-10', 'imagenet')
DIGITS_STEPS = (('pretext', 'simclr.py', 'configs/pretext/simclr_digits.yml'),
                ('scan', 'scan.py', 'configs/scan/scan_digits.yml'),
                ('selflabel', 'selflabel.py', 'configs/selflabel/selflabel_digits.yml'))
GPU_OPTS = ['device=cuda', 'precision=bf16', 'fast_augmentation=true']


def environment():
    """What the machine has: interpreter, torch, CUDA, the GPU, faiss (and its GPU support)."""
    info = {'python': platform.python_version(), 'host': platform.node()}
    try:
        import torch
        info.update(torch=torch.__version__, cuda=torch.cuda.is_available(),
                    cuda_version=torch.version.cuda)
        if torch.cuda.is_available():
            info['gpu'] = torch.cuda.get_device_name(0)
            info['gpu_memory_gib'] = round(torch.cuda.get_device_properties(0).total_memory
                                           / 2 ** 30, 1)
    except ImportError as error:
        info.update(torch=None, cuda=False, error=str(error))
    try:
        import faiss
        info['faiss'] = getattr(faiss, '__version__', 'present')
        info['faiss_gpu'] = hasattr(faiss, 'StandardGpuResources') and faiss.get_num_gpus() > 0
    except ImportError:
        info['faiss'] = None
    missing = []
    for module in ('numpy', 'scipy', 'sklearn', 'yaml', 'easydict', 'termcolor', 'tqdm', 'PIL',
                   'matplotlib', 'timm', 'safetensors'):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    info['missing_modules'] = missing
    return info


def run(command, timeout, **kwargs):
    """(return code, seconds, stdout, stderr) of a command; a time-out is return code 124."""
    started = time.time()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                              **kwargs)
        return done.returncode, time.time() - started, done.stdout, done.stderr
    except subprocess.TimeoutExpired as error:
        out = error.stdout.decode() if isinstance(error.stdout, bytes) else (error.stdout or '')
        err = error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or '')
        return 124, time.time() - started, out, err


def cuda_tests(timeout):
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, 'junit.xml')
        code, seconds, out, err = run([sys.executable, '-m', 'pytest', 'tests/test_cuda.py', '-q',
                                       '-p', 'no:cacheprovider', f'--junitxml={report}', '-rs'],
                                      timeout)
        result = {'returncode': code, 'seconds': round(seconds, 1), 'output_tail': out[-3000:]}
        if os.path.isfile(report):
            suite = ElementTree.parse(report).getroot().find('testsuite')
            result.update({k: int(suite.get(k, 0)) for k in ('tests', 'failures', 'errors',
                                                              'skipped')})
            result['passed'] = (result['tests'] - result['failures'] - result['errors']
                                - result['skipped'])
            result['cases'] = {
                case.get('name'): ('failed' if case.find('failure') is not None or
                                   case.find('error') is not None else
                                   'skipped: ' + case.find('skipped').get('message', '')
                                   if case.find('skipped') is not None else 'passed')
                for case in suite.iter('testcase')}
    return result


def json_lines(text):
    records = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith('{'):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return records


def bench(preset, timeout, steps):
    code, seconds, out, err = run([sys.executable, 'benchmarks/bench.py', '--presets', preset,
                                   '--device', 'cuda', '--steps', str(steps), '--warmup', '3'],
                                  timeout)
    result = {'returncode': code, 'seconds': round(seconds, 1), 'figures': json_lines(out)}
    if code:
        result['error_tail'] = err[-2000:]
    return result


def digits_pipeline(timeout):
    """The three steps and eval on the digits on the GPU, into a temporary root_dir."""
    result = {'opts': GPU_OPTS, 'steps': {}}
    with tempfile.TemporaryDirectory() as tmp:
        opts = GPU_OPTS + [f'root_dir={tmp}']
        deadline = time.time() + timeout
        for step, script, config in DIGITS_STEPS:
            entry = {}
            for what, program in (('train', script), ('eval', 'eval.py')):
                left = max(1, int(deadline - time.time()))
                code, seconds, out, err = run([sys.executable, program, '--config_env',
                                               'configs/env.yml', '--config_exp', config,
                                               '--opts', *opts], left)
                entry[f'{what}_seconds'] = round(seconds, 1)
                if code:
                    entry.update(failed=what, returncode=code, error_tail=err[-2000:])
                    result['steps'][step] = entry
                    return result
            with open(os.path.join(tmp, 'digits', step, 'eval', 'metrics.json')) as f:
                metrics = json.load(f)
            scores = metrics.get('kmeans', metrics) if step == 'pretext' else metrics
            entry.update({k: scores.get(k) for k in ('acc', 'nmi', 'ari', 'ami')})
            with open(os.path.join(tmp, 'digits', step, 'log.jsonl')) as f:
                log = [json.loads(line) for line in f]
            entry['epochs'] = len(log)
            entry['images_per_s_last_epoch'] = log[-1].get('images_per_s')
            result['steps'][step] = entry
    return result


def main(args):
    started = time.time()
    report = {'started': time.strftime('%Y-%m-%d %H:%M:%S %Z'), 'environment': environment()}
    env = report['environment']
    skip = None
    if not env.get('cuda'):
        skip = 'no CUDA device here (torch.cuda.is_available() is False)'
    elif env.get('faiss') is None:
        skip = ('faiss is not installed: every part needs it (mining); install faiss-cpu or '
                'faiss-gpu into the dependency folder')
    elif env['missing_modules']:
        skip = f"missing Python modules: {', '.join(env['missing_modules'])}"
    if skip:
        report['skipped'] = skip
        print(f"gpu_check: skipping the CUDA tests, the benchmark and the digits run: {skip}")
    else:
        if not env.get('faiss_gpu'):
            print('gpu_check: faiss has no GPU support here: mining on the GPU uses the blocked '
                  'matrix-product fallback, and the faiss-gpu test is skipped')
        # shares of the budget measured on an H200: tests ~60 s, digits ~110 s, each preset
        # of the benchmark ~40-60 s at 10 steps; time one part leaves goes to the next
        left = lambda: args.budget - (time.time() - started)
        print('gpu_check: CUDA tests ...', flush=True)
        report['cuda_tests'] = cuda_tests(max(30, int(left() * 0.2)))
        print('gpu_check: digits pipeline ...', flush=True)
        report['digits_pipeline'] = digits_pipeline(max(30, int(left() * 0.4)))
        report['bench'] = {}
        for i, preset in enumerate(BENCH_PRESETS):
            print(f'gpu_check: bench {preset} ...', flush=True)
            share = max(30, int(left() / (len(BENCH_PRESETS) - i)))
            report['bench'][preset] = bench(preset, share, args.bench_steps)
    report['seconds'] = round(time.time() - started, 1)
    with open(args.out, 'w') as f:
        json.dump(report, f, indent=2)
    print(f"gpu_check: {report['seconds']}s; figures in {args.out}")
    return report


def get_args_parser():
    parser = argparse.ArgumentParser(description='What only a GPU can show, as one JSON.')
    parser.add_argument('--out', default='gpu_check.json', help='the JSON written')
    parser.add_argument('--budget', type=int, default=450,
                        help='seconds for the whole check (default 450: inside 8 minutes)')
    parser.add_argument('--bench-steps', type=int, default=10,
                        help='measured steps per figure of bench.py (default 10)')
    return parser


if __name__ == '__main__':
    main(get_args_parser().parse_args())
