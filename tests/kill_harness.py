"""Run pipeline steps in forked children and SIGKILL them at chosen or random points.

    python -m tests.kill_harness PLAN.json

The scripts are imported once here; every life of a run is a child forked from this process (a
new process per life, as a rerun is, without paying for the imports again) and ends however the
plan says: killed by itself at an event, killed by this process after a random delay, or
finishing. PLAN is a JSON list of runs, {"step", "env", "exp", "opts", "lives"}, where each life
is "finish", "EVENT:N" (SIGKILL at the N-th EVENT of that life, see EVENTS) or "timer:SECONDS".
Prints one JSON line per life: {"step", "root", "life", "status", "seconds"}, status being the
exit code or -9 for a kill.
"""
import io
import json
import os
import signal
import sys
import time

import torch

import scan
import selflabel
import simclr
from utils.runtime import get_args_parser, run_cli
from utils.training import RunLog

MODULES = {'pretext': simclr, 'scan': scan, 'selflabel': selflabel}


def die():
    os.kill(os.getpid(), signal.SIGKILL)


class Counter:
    def __init__(self, n):
        self.n, self.seen = n, 0

    def hit(self):
        self.seen += 1
        return self.seen == self.n


def arm_rename(counter, before, matches):
    """SIGKILL at the counter's os.replace(src, dst) for which matches(src, dst) holds."""
    original = os.replace

    def replace(src, dst, **kwargs):
        hit = matches(str(src), str(dst)) and counter.hit()
        if hit and before:
            die()
        original(src, dst, **kwargs)
        if hit:
            die()
    os.replace = replace


def arm_half_save(counter):
    """torch.save that writes half of the file (the temporary one) and dies."""
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if not counter.hit():
            return original(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        original(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        f.flush()
        die()
    torch.save = save


def arm_log(counter, half):
    """RunLog.write that dies after its line (or after half of it, `half`)."""
    original = RunLog.write

    def write(self, record):
        if not counter.hit():
            return original(self, record)
        if half:
            line = json.dumps(record) + '\n'
            with open(self.path, 'a', encoding='utf-8') as f:
                f.write(line[:len(line) // 2])
            die()
        original(self, record)
        die()
    RunLog.write = write


def is_checkpoint(path):
    return path.endswith('checkpoint.pth.tar')


EVENTS = {
    # the new checkpoint is complete in its temporary file, not yet renamed
    'before-rename': lambda c: arm_rename(c, True, lambda s, d: is_checkpoint(d)),
    # the old checkpoint moved to .prev, the new one not yet in its place
    'between-renames': lambda c: arm_rename(c, False, lambda s, d: is_checkpoint(s)),
    'half-save': arm_half_save,                       # a temporary file cut short
    'after-log': lambda c: arm_log(c, half=False),    # the epoch logged, not checkpointed
    'half-log': lambda c: arm_log(c, half=True),      # a log line cut short
}


def child(run, life):
    if ':' in life and not life.startswith('timer:'):
        event, n = life.split(':')
        EVENTS[event](Counter(int(n)))
    sys.stdout = sys.stderr = open(os.devnull, 'w')  # the parent's stdout carries the results
    argv = ['--config_env', run['env'], '--config_exp', run['exp'], '--opts', *run['opts']]
    try:
        run_cli(MODULES[run['step']].main, get_args_parser(run['step']), argv)
    except SystemExit as end:
        os._exit(end.code if isinstance(end.code, int) else 1)
    except BaseException:
        os._exit(2)
    os._exit(0)


def live(run, life):
    pid = os.fork()
    if pid == 0:
        child(run, life)
    if life.startswith('timer:'):
        deadline = time.monotonic() + float(life.split(':')[1])
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return decode(status)
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
    return decode(os.waitpid(pid, 0)[1])


def decode(status):
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def main(plan_path):
    with open(plan_path) as f:
        plan = json.load(f)
    for run in plan:
        for life in run['lives']:
            started = time.monotonic()
            status = live(run, life)
            print(json.dumps({'step': run['step'], 'root': run['root'], 'life': life,
                              'status': status,
                              'seconds': round(time.monotonic() - started, 1)}), flush=True)


if __name__ == '__main__':
    main(sys.argv[1])
