"""Progress bars that draw only on a terminal.

Redirected to a file, a bar's redraws pile up by the thousand; there the one line per epoch that
each step prints (utils.training.RunLog) is the progress report.
"""
import sys

from tqdm import tqdm

from utils.distributed import is_main_process


def on_terminal(stream):
    return stream is not None and hasattr(stream, 'isatty') and stream.isatty()


def progress(iterable=None, **kwargs):
    """tqdm(iterable, **kwargs), drawn on the main process when stderr (tqdm's output) is a
    terminal, silent otherwise; set_postfix and the rest work either way."""
    hidden = kwargs.pop('disable', False) or not is_main_process() \
        or not on_terminal(kwargs.get('file', sys.stderr))
    return tqdm(iterable, disable=hidden, **kwargs)
