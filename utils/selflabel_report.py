"""Self-labeling that finds nothing confident must say so, and change nothing.

The original raises on the first batch without a confident sample; here such a batch is
skipped, leaving the model as it was (its BatchNorm statistics too, which the forward passes
in train mode would otherwise move), an epoch without any is reported at once, and a run in
which nothing was ever confident ends with the SCAN model unchanged as its result, saying so."""
import torch

from utils.run_warnings import warn
from utils.text import plural

LOWER_HINT = "lower confidence_threshold (e.g. --opts confidence_threshold=0.9) to self-label"


def buffers_snapshot(model):
    """Copies of the model's buffers (BatchNorm running statistics and counters)."""
    return [b.detach().clone() for b in model.buffers()]


def restore_buffers(model, snapshot):
    with torch.no_grad():
        for buffer, saved in zip(model.buffers(), snapshot):
            buffer.copy_(saved)


def report_epoch(record, threshold):
    """Said at once, on the epoch's line: an epoch in which no image was confident."""
    if record['confident_share'] == 0:
        top = record.get('max_confidence')
        highest = f" (the highest probability was {top:.3f})" if top is not None else ''
        print(f"epoch {record['epoch']}: no image reached the confidence threshold "
              f"{threshold}{highest}; nothing was trained in this epoch", flush=True)


def report_run(step_dir, records, threshold):
    """Warnings of the whole run, from every epoch's record (a resumed run's too). Returns
    whether nothing was ever confident (the SCAN model is then the result)."""
    empty = [r['epoch'] for r in records if r.get('confident_share') == 0]
    if records and len(empty) == len(records):
        warn(step_dir, 'selflabel',
             f"no image reached the confidence threshold {threshold} in "
             f"{'the only epoch' if len(records) == 1 else f'any of the {len(records)} epochs'}"
             f": nothing was trained, and the result is the "
             f"SCAN model unchanged; {LOWER_HINT}")
        return True
    if empty:
        warn(step_dir, 'selflabel',
             f"no image reached the confidence threshold {threshold} in "
             f"{plural(len(empty), 'epoch')} of {len(records)} ({', '.join(map(str, empty[:20]))}"
             f"{', ...' if len(empty) > 20 else ''}): those epochs trained nothing")
    return False
