"""`python -m backend.training`: train a LoRA adapter, check a data file, or resume a run.

Settings come, lowest first, from the defaults, the saved settings of the run being resumed,
`--config run.yaml`, then the flags given on the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from backend.training import run_files
from backend.training.config import (
    CONFIG_FILE,
    TrainConfig,
    config_from_mapping,
    field_specs,
    load_yaml,
)
from backend.training.errors import TrainingError

ALIASES = {"learning_rate": ["--lr"], "grad_accum": ["--gradient-accumulation-steps"],
           "batch_size": ["--per-device-batch-size"], "epochs": ["--num-epochs"]}
_TYPES = {"int": int, "float": float, "str": str}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend.training",
        description="Train a LoRA adapter (transformers Trainer + peft) on chat data.",
    )
    parser.add_argument("--config", help="YAML file with settings (same names as the flags)")
    parser.add_argument("--validate-only", action="store_true",
                        help="check the data file(s) with the model's chat template; no training")
    parser.add_argument("--resume", metavar="latest|STEP",
                        help="continue the run in --output-dir from a checkpoint")
    for f in field_specs():
        flags = [f"--{f.name.replace('_', '-')}", *ALIASES.get(f.name, [])]
        kind = str(f.type).split(" ")[0]
        common = {"dest": f.name, "default": argparse.SUPPRESS,
                  "help": f"{f.metadata['help']} (default: {f.default})"}
        if kind == "bool":
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        else:
            parser.add_argument(*flags, type=_TYPES.get(kind, str),
                                choices=f.metadata.get("choices"), **common)
    return parser


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults < resumed run's saved settings < --config < flags."""
    explicit = {f.name: getattr(args, f.name) for f in field_specs() if hasattr(args, f.name)}
    from_file = load_yaml(args.config) if args.config else {}
    output_dir = explicit.get("output_dir") or from_file.get("output_dir") \
        or from_file.get("output-dir")
    base = None
    if args.resume and output_dir and (Path(output_dir) / CONFIG_FILE).is_file():
        base = config_from_mapping(load_yaml(Path(output_dir) / CONFIG_FILE))
    config = config_from_mapping(from_file, base)
    return config_from_mapping(explicit, config)


def exact_command(argv: list[str]) -> str:
    from backend.training.runner import command_line, training_command

    return command_line(training_command(argv, None), os.environ.get("CUDA_VISIBLE_DEVICES"))


def prepare_output_dir(path: str) -> Path:
    """Create the run folder and prove it can be written; TrainingError otherwise."""
    if not path.strip():
        raise TrainingError("--output-dir is required.")
    run_dir = Path(path).expanduser().resolve()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=run_dir, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise TrainingError(f"Cannot write to the output folder {run_dir}: "
                            f"{exc.strerror or exc}") from None
    status = run_files.read_status(run_dir)
    # Under torchrun only rank 0 asks: the other ranks would see rank 0's own pid there.
    first_rank = os.environ.get("RANK", "0") == "0"
    if first_rank and status and status.get("state") in run_files.ACTIVE_STATES:
        pid = status.get("pid")
        if isinstance(pid, int) and pid != os.getpid() and _alive(pid):
            raise TrainingError(f"A run is already training in {run_dir} (pid {pid}).")
    return run_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def validate_only(config: TrainConfig) -> int:
    """Check the data files with the model's tokenizer; print a report; 0 when all is well."""
    from backend.training.data import check_data
    from backend.training.modeling import load_tokenizer, resolve_model_path

    tokenizer = load_tokenizer(resolve_model_path(config.model), config.trust_remote_code)
    ok = True
    for path in [config.data, config.val_data]:
        if not path:
            continue
        report = check_data(path, tokenizer, config.max_length, config.long_records).report
        print(report.summary())
        for note in report.notes[:20]:
            print(f"  note: {note}")
        for problem in report.problems:
            print(f"  error: {problem}")
        if report.problem_count > len(report.problems):
            print(f"  ... and {report.problem_count - len(report.problems)} more problem(s)")
        ok = ok and report.ok
    print("OK: the data is ready to train." if ok else "FAILED: fix the problems above.")
    return 0 if ok else 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
        if not config.data:
            raise TrainingError("--data is required (a .json or .jsonl file).")
        if args.validate_only:
            return validate_only(config)
        run_dir = prepare_output_dir(config.output_dir)
        config = config.replace(output_dir=str(run_dir))
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    from backend.training.callbacks import StopSignal
    from backend.training.trainer import run_training

    stop = StopSignal()
    stop.install()
    return run_training(config, run_dir, args.resume, exact_command(argv), stop)
