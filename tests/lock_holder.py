"""A second process that holds an output folder's lock, as a concurrent run would."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD_LOCK = ("import sys; from utils.lock import lock_output_folder; "
             "lock_output_folder(sys.argv[1]); print('locked', flush=True); sys.stdin.read()")


def hold_lock(folder):
    """A process that holds `folder`'s lock until its stdin closes (or it is killed)."""
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(folder)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == 'locked\n'
    return holder
