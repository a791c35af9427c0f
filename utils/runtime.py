"""What every script does first: arguments, configuration, process group, device. The device
(and torch) come last and apart: eval.py's re-export from saved predictions never needs them."""
import argparse
import sys

from termcolor import colored

from utils.checkpoint import disk_full
from utils.config import STEP_OF_SETUP, ConfigError, load_config
from utils.distributed import init_distributed, is_main_process
from utils.errors import UserError
from utils.experiment_clash import check_no_clash
from utils.lock import lock_output_folder, release_output_locks
from utils.outputs import protect, reset_protected
from utils.run_warnings import start_warnings


def get_args_parser(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--config_env', required=True, help='environment YAML (configs/env.yml)')
    parser.add_argument('--config_exp', required=True, help='experiment YAML (configs/<step>/...)')
    parser.add_argument('--opts', nargs='*', default=[], metavar='KEY=VALUE',
                        help='override config keys, dotted for nested ones '
                             '(e.g. epochs=10 optimizer_kwargs.lr=0.1 device=cpu)')
    return parser


def start_run(args, setup):
    """Load and check the configuration, join DDP when launched by torchrun, pick the device."""
    cfg = load_run_config(args, setup)
    device = start_device(cfg)
    log(f"{cfg.setup}: {cfg.config_files['exp']} on {device}; outputs in "
        f"{cfg.paths[cfg.step + '_dir']}", 'blue')
    return cfg, device


def load_run_config(args, setup):
    """The checked configuration; the folder of its images protected. Imports no torch."""
    try:  # eval.py (setup None) may read a file that holds no training keys
        cfg = load_config(args.config_env, args.config_exp, args.opts, evaluation=setup is None)
    except ConfigError as e:
        sys.exit(colored(f"config error: {e}", 'red'))
    if setup is not None and cfg.step != STEP_OF_SETUP[setup]:
        sys.exit(colored(f"config error: {args.config_exp} has setup '{cfg.setup}', but this "
                         f"script runs '{setup}'", 'red'))
    reset_protected()  # the folders of this run's images, where nothing is written
    if cfg.get('folder'):
        protect(cfg.folder)
    return cfg


def start_device(cfg):
    """Join DDP when launched by torchrun, seed, pick the device (the first use of torch)."""
    from utils.device import configure_backends, select_device
    from utils.training import seed_everything

    init_distributed()
    seed_everything(cfg.seed)  # model initialisation is part of the run's reproducibility
    device = select_device(cfg.device)
    chosen = configure_backends(device, cfg.precision)
    if cfg.precision == 'auto':
        log(f"precision auto: {chosen} on this {device.type.upper()} ("
            + ("it computes bf16 natively" if chosen == 'bf16' else
               "no native bf16 here: bf16 would be slower") + ")")
    return device


def lock_run_folder(cfg, folder):
    """Create an output folder of this run and hold its lock (rank 0; see utils/lock.py): one
    run at a time writes there. Call it after the checks that the folder may be written, and
    before any work: a folder holding another configuration's model stops the run here."""
    if is_main_process():
        lock_output_folder(folder, hint=f"Set root_dir in {cfg.config_files['env']} (now "
                                        f"{cfg.root_dir}) to a folder you can write, or pass "
                                        f"--opts root_dir=PATH.")
        check_no_clash(cfg, folder)
        start_warnings(folder)  # warnings.json describes this run


def run_cli(main, parser, argv=None):
    """Entry point of a script: parse arguments (sys.argv unless `argv`), run, and turn user
    errors into a clean exit 1 with the message."""
    args = parser.parse_args(argv)
    try:
        return main(args)
    except (UserError, FileNotFoundError) as error:
        sys.exit(colored(f"error: {error}", 'red'))
    except OSError as error:
        if not disk_full(error):
            raise
        sys.exit(colored(f"error: the disk is full: {error}. Free some space and rerun the same "
                         f"command; training resumes from the last checkpoint.", 'red'))
    finally:
        release_output_locks()


def log(message, color=None):
    if is_main_process():
        print(colored(message, color) if color else message, flush=True)
