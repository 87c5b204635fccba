"""The `meshgnn` command: tools around training runs.

  meshgnn ckpt inspect CKPT       verify a checkpoint and print what it holds
  meshgnn ckpt set-lr CKPT LR     write CKPT's <name>_lr_adjusted.ckpt with a new learning rate
  meshgnn sweep report SWEEP_DIR  rank a sweep's trials, write report.csv/.json and plots into
                                  SWEEP_DIR, print the best trial as a train.py command
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshgnn.errors import UserError

DEFAULT_CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose_current(choices: dict[str, str], conf_dir: Path):
    from hydra import compose, initialize_config_dir

    from meshgnn.config import register_configs

    register_configs()
    overrides = [f"{group}={choice}" for group, choice in choices.items()
                 if choice is not None and not group.startswith("hydra") and "@" not in group]
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def cmd_ckpt_inspect(args: argparse.Namespace) -> None:
    from meshgnn.training.checkpoint import load_checkpoint
    from meshgnn.ckpt_tools import config_differences, describe

    path = Path(args.checkpoint)
    payload = load_checkpoint(path)
    print("\n".join(describe(path, payload)))
    if not args.conf.is_dir():
        print(f"config diff    skipped: no config folder at {args.conf} (pass --conf)")
        return
    choices = dict(payload.get("hydra_choices") or {})
    rows = config_differences(payload["config_yaml"], _compose_current(choices, args.conf))
    label = ", ".join(f"{g}={c}" for g, c in choices.items() if c and not g.startswith("hydra")) or "defaults"
    print(f"config diff    against {args.conf} ({label}): "
          + ("identical" if not rows else f"{len(rows)} difference(s)"))
    if rows:
        print("\n".join(rows))


def cmd_ckpt_set_lr(args: argparse.Namespace) -> None:
    from meshgnn.ckpt_tools import set_lr

    if not args.lr > 0:
        raise UserError(f"learning rate {args.lr} must be positive")
    out = set_lr(Path(args.checkpoint), args.lr)
    print(f"wrote {out} (learning rate {args.lr:g}); continue with: python train.py resume={out}")


def cmd_sweep_report(args: argparse.Namespace) -> None:
    from meshgnn.sweeps.report import report

    print("\n".join(report(Path(args.sweep_dir), storage=args.storage, study_name=args.study)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshgnn", description="Tools around meshgnn training runs.")
    commands = parser.add_subparsers(dest="command", required=True)

    ckpt = commands.add_parser("ckpt", help="inspect or adjust checkpoints").add_subparsers(
        dest="ckpt_command", required=True)
    inspect = ckpt.add_parser("inspect", help="verify a checkpoint and print epoch, metrics, lineage, "
                                              "and its config's differences from conf/")
    inspect.add_argument("checkpoint")
    inspect.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="config folder to compare with")
    inspect.set_defaults(handler=cmd_ckpt_inspect)
    set_lr = ckpt.add_parser("set-lr", help="write <name>_lr_adjusted.ckpt with a new learning rate")
    set_lr.add_argument("checkpoint")
    set_lr.add_argument("lr", type=float)
    set_lr.set_defaults(handler=cmd_ckpt_set_lr)

    sweep = commands.add_parser("sweep", help="summarise hyperparameter sweeps").add_subparsers(
        dest="sweep_command", required=True)
    sweep_report = sweep.add_parser("report", help="rank a sweep's trials, write report.csv/.json and "
                                                   "plots, print the best trial as a train.py command")
    sweep_report.add_argument("sweep_dir", help="multirun/<date>/<time> folder of a "
                                                "`python train.py -m hparams_search=optuna` sweep")
    sweep_report.add_argument("--storage", help="Optuna storage URL (default: from SWEEP_DIR/sweep.json)")
    sweep_report.add_argument("--study", help="study name (default: from SWEEP_DIR/sweep.json)")
    sweep_report.set_defaults(handler=cmd_sweep_report)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
