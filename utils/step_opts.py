"""The --opts of scripts/run_folder.sh that each step takes.

    python -m utils.step_opts SETUP KEY=VALUE ...   (prints the step's ones, NUL-separated)

One command runs all three steps with one set of --opts, but some keys belong to some steps
only (num_neighbors: steps 1 and 2; num_heads: step 2; confidence_threshold: step 3): each
step gets the keys its schema has. A key that no step has is an error naming it."""
import sys

from utils.config import COMMON_SCHEMA, ENV_SCHEMA, STEP_SCHEMAS

PIPELINE = ('simclr', 'scan', 'selflabel')


# step 3's num_heads only accepts 1 (the original's files say so): the heads are step 2's
ONLY_IN = {'num_heads': ('scan',)}


def known(setup, opt):
    key = opt.split('=', 1)[0].split('.', 1)[0]
    if key in ONLY_IN:
        return setup in ONLY_IN[key]
    return key in {**ENV_SCHEMA, **COMMON_SCHEMA, **STEP_SCHEMAS[setup]}


def opts_for(setup, opts):
    """The opts of `opts` that the step `setup` knows; SystemExit naming a key no step knows."""
    unknown = [o for o in opts if not any(known(s, o) for s in PIPELINE)]
    if unknown:
        sys.exit(f"error: --opts {unknown[0]!r}: no step has the key "
                 f"'{unknown[0].split('=', 1)[0]}' (see utils/config.py for the keys)")
    return [o for o in opts if known(setup, o)]


if __name__ == '__main__':
    sys.stdout.write(''.join(o + '\0' for o in opts_for(sys.argv[1], sys.argv[2:])))
