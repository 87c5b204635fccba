"""The `meshgnn` command: training and the tools around training runs.

  meshgnn train [GROUP=OPTION] [key=value ...] [-m ...]
                                  train (or sweep with -m), exactly as `python train.py ...` in
                                  a checkout; `meshgnn train --help` lists the config groups
  meshgnn ckpt inspect CKPT       verify a checkpoint and print what it holds
  meshgnn ckpt set-lr CKPT LR     write CKPT's <name>_lr_adjusted.ckpt with a new learning rate
                                  and print the command that continues the run at it (for a
                                  run's last.ckpt: resume=<run dir>, in place)
  meshgnn sweep report SWEEP_DIR  rank a sweep's trials, write report.csv/.json and plots into
                                  SWEEP_DIR, print the best trial as a train.py command
  meshgnn data check FOLDER --inputs A B --targets C [--node-type-field F --node-type-values 0 1 2]
                     [--globals G H] [--pattern GLOB] [--workers N]
                                  validate a folder of mesh files (every problem of every file
                                  at once) and print a summary of its meshes and fields
  meshgnn data export heat2d --out DIR [--num-samples 20]
                                  write built-in generated samples as VTU + JSON to try the
                                  mesh-folder workflow on
  meshgnn diagnose RUN_DIR|SWEEP_DIR
                                  read a run's curves and print a verdict per symptom with the
                                  overrides to try (writes diagnosis.json); a staged run stage
                                  by stage; for a sweep, rank the trials' problems
  meshgnn plot RUN_DIR [RUN_DIR ...] [--out DIR]
                                  PNGs of loss curves, per-target errors and optimiser state,
                                  comparing runs (a staged run as one curve over its stages)
  meshgnn export RUN_DIR|CKPT OUT_DIR [--precision bf16] [--prune 0.2] [--program]
                                  write a model package (safetensors weights, config, normaliser,
                                  checksummed manifest; optionally a torch.export program) and
                                  measure it on the run's test split
  meshgnn predict MODEL FILES_OR_FOLDERS... --out DIR [--globals k=1.5] [--precision bf16]
                 [--workers 4] [--batch-nodes 200000]
                                  predict on mesh files (read by worker processes, predicted in
                                  batches), write VTU with predicted (and error) fields,
                                  predictions.csv and predictions.json; print meshes/s
  meshgnn evaluate MODEL DATA [KEY=VALUE ...] [--out FILE.json]
                                  test metrics of a model on its data config's test split (with
                                  overrides) or on mesh files, as training's test reports them
  meshgnn ensemble MEMBERS... | --sweep SWEEP_DIR --top-k 5 [--predict FILES... --out DIR]
                                  average models: test-split table per member and ensemble, and
                                  VTU with mean and std fields
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshgnn import conf_location
from meshgnn.boundary import guarded
from meshgnn.errors import UserError
from meshgnn.model_commands import cmd_ensemble, cmd_evaluate, cmd_export, cmd_predict

DEFAULT_CONF = conf_location.conf_dir()


def cmd_ckpt_inspect(args: argparse.Namespace) -> None:
    from meshgnn.training.checkpoint import load_checkpoint
    from meshgnn.ckpt_tools import composed_like, config_differences, describe

    path = Path(args.checkpoint)
    payload = load_checkpoint(path)
    print("\n".join(describe(path, payload)))
    if not args.conf.is_dir():
        print(f"config diff    skipped: no config folder at {args.conf} (pass --conf)")
        return
    composed, used, skipped = composed_like(payload, args.conf)
    rows = config_differences(payload["config_yaml"], composed)
    print(f"config diff    against {args.conf} ({', '.join(used) or 'defaults'}): "
          + ("identical" if not rows else f"{len(rows)} difference(s)"))
    if skipped:
        print(f"               not in {args.conf}, composed without: {', '.join(skipped)}")
    if rows:
        print("\n".join(rows))


def cmd_ckpt_set_lr(args: argparse.Namespace) -> None:
    from meshgnn.ckpt_tools import continue_command, set_lr

    if not args.lr > 0:
        raise UserError(f"learning rate {args.lr} must be positive")
    out = set_lr(Path(args.checkpoint), args.lr)
    print(f"wrote {out} (learning rate {args.lr:g}); {continue_command(out, Path(args.checkpoint))}")


def cmd_sweep_report(args: argparse.Namespace) -> None:
    from meshgnn.sweeps.report import report

    print("\n".join(report(Path(args.sweep_dir), storage=args.storage, study_name=args.study)))


def _split_ratios(args: argparse.Namespace) -> tuple[float, float, float]:
    """--split, or data.split of CONF/data/mesh_folder.yaml (what training would use), checked
    by the training config's own rule."""
    from meshgnn.config import SplitConfig
    from meshgnn.constraints import check_values

    if args.split is None:
        from omegaconf import OmegaConf

        conf = args.conf / "data" / "mesh_folder.yaml"
        if not conf.is_file():
            raise UserError(f"no config {conf} to take the default split ratios from; pass "
                            "--split TRAIN VAL TEST (or --conf CONF_DIR)")
        split = OmegaConf.load(conf).split
        args.split = [split.train, split.val, split.test]
    ratios = dict(zip(("train", "val", "test"), map(float, args.split)))
    check_values(SplitConfig, ratios, "data.split", where="--split")
    return ratios["train"], ratios["val"], ratios["test"]


def cmd_data_check(args: argparse.Namespace) -> None:
    from meshgnn.data.folder_report import check_folder
    from meshgnn.data.folder_spec import FolderSpec

    spec = FolderSpec(path=Path(args.folder), pattern=args.pattern, inputs=tuple(args.inputs),
                      targets=tuple(args.targets), node_type_field=args.node_type_field,
                      node_type_values=tuple(args.node_type_values), globals=tuple(args.globals))
    report = check_folder(spec, workers=args.workers, split=_split_ratios(args))
    print("\n".join(report.summary_lines()))
    for warning in report.warnings:
        print(f"warning: {warning}")
    sys.stdout.flush()
    report.raise_if_problems()
    print(f"ok: {len(report.files)} files" + (f", {len(report.warnings)} warning(s)" if report.warnings else ""))


def cmd_data_export(args: argparse.Namespace) -> None:
    from meshgnn.data.export import export_samples, folder_commands
    from meshgnn.data.generate import describe_mesh_size
    from meshgnn.data.sources import get_source
    from meshgnn.data_config import MeshSize

    if bool(args.source) == bool(args.data):
        raise UserError("name one built-in source: `meshgnn data export heat2d --out DIR` "
                        "(or --data heat2d)")
    args.data = args.source or args.data
    get_source(args.data)  # an unknown name fails here, before any config is read
    mesh_size, max_holes = args.mesh_size, args.max_holes
    if mesh_size is None or max_holes is None:
        from omegaconf import OmegaConf

        conf = args.conf / "data" / f"{args.data}.yaml"
        if not conf.is_file():
            raise UserError(f"no config {conf} to take the default mesh size and max holes from; pass "
                            "--mesh-size and --max-holes (or --conf CONF_DIR)")
        defaults = OmegaConf.to_container(OmegaConf.load(conf))
        mesh_size = defaults["mesh_size"] if mesh_size is None else mesh_size  # a number or a [min, max] range
        max_holes = int(defaults["max_holes"]) if max_holes is None else max_holes
    problem = MeshSize().problem(mesh_size, "data.mesh_size")
    if problem:
        raise UserError(f"--mesh-size {mesh_size} {problem.split(';')[0]}; pass e.g. --mesh-size 0.08")
    paths = export_samples(args.data, args.out, args.num_samples, args.seed, mesh_size, max_holes,
                           args.workers)
    check, train = folder_commands(args.data, args.out)
    print(f"wrote {len(paths)} {args.data} samples (mesh size {describe_mesh_size(mesh_size)}, max holes {max_holes}) "
          f"to {args.out}, commands in {args.out / 'README.txt'}")
    print(f"check:  {check}")
    print(f"train:  {train}")


def cmd_diagnose(args: argparse.Namespace) -> None:
    from meshgnn.diagnostics.runs import diagnose_path

    print("\n".join(diagnose_path(Path(args.path))))


def cmd_plot(args: argparse.Namespace) -> None:
    from meshgnn.diagnostics.plots import plot_runs

    for path in plot_runs([Path(p) for p in args.runs], args.out):
        print(f"wrote {path}")


def cmd_tensorboard(args: argparse.Namespace) -> None:
    from meshgnn.loggers.tensorboard_command import start_tensorboard

    sys.exit(start_tensorboard(args.folders, ["--port", str(args.port), "--host", args.host]))


def _inference_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="arithmetic of the forward pass (autocast; default fp32)")
    parser.add_argument("--prune", type=float, default=0.0, metavar="FRACTION",
                        help="L1-prune this fraction of every Linear layer's weights first (e.g. 0.2)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")


def _folder_options(parser: argparse.ArgumentParser) -> None:
    """How a folder is read and batched (the predictions do not depend on either)."""
    from meshgnn.inference.folder_defaults import BATCH_NODES, default_workers

    parser.add_argument("--workers", type=int, default=default_workers(), metavar="N",
                        help="processes reading the files ahead of the model (0 = read in the main process; "
                             f"default {default_workers()}: one per core, at most 4)")
    parser.add_argument("--batch-nodes", type=int, default=BATCH_NODES, metavar="N",
                        help="predict meshes together in batches of up to N nodes (a larger mesh goes alone; "
                             f"default {BATCH_NODES:,}); lower it if the device runs out of memory")


def _globals_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--globals", nargs="+", default=[], metavar="NAME=VALUE",
                        help="global parameters for every file, replacing the files' own (field_data or "
                             "sidecar JSON); a list-valued one as NAME=1,2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meshgnn", description="Tools around meshgnn training runs.")
    commands = parser.add_subparsers(dest="command", required=True)
    # Listed for --help only: main() hands `train ...` to Hydra before argparse sees its overrides.
    commands.add_parser("train", help="train a model: Hydra overrides, -m to sweep (meshgnn train --help)")

    ckpt = commands.add_parser("ckpt", help="inspect or adjust checkpoints").add_subparsers(
        dest="ckpt_command", required=True)
    inspect = ckpt.add_parser("inspect", help="verify a checkpoint and print epoch, metrics, lineage, "
                                              "and its config's differences from conf/")
    inspect.add_argument("checkpoint")
    inspect.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="config folder to compare with")
    inspect.set_defaults(handler=cmd_ckpt_inspect)
    set_lr = ckpt.add_parser("set-lr", help="write <name>_lr_adjusted.ckpt with a new learning rate and "
                                            "print the command that continues the run at it")
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

    data = commands.add_parser("data", help="mesh folders: validate them, export samples as files")
    data = data.add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate a folder of mesh files and summarise it (exit 0 if "
                                          "it is fit for training, 2 with every problem otherwise)")
    check.add_argument("folder", help="folder of meshio-readable files (VTU, VTK, MSH, XDMF, ...)")
    check.add_argument("--inputs", nargs="*", default=[], metavar="FIELD",
                       help="point_data fields fed to the model (node features)")
    check.add_argument("--targets", nargs="+", required=True, metavar="FIELD",
                       help="point_data fields the model predicts")
    check.add_argument("--node-type-field", metavar="FIELD", help="integer point_data field of node kinds")
    check.add_argument("--node-type-values", nargs="+", type=int, default=[], metavar="V",
                       help="the node-type field's values in one-hot order, interior kind first")
    check.add_argument("--globals", nargs="*", default=[], metavar="NAME",
                       help="global parameters, from field_data or the sidecar <file stem>.json")
    check.add_argument("--pattern", default="*", help="glob of the files, relative to FOLDER "
                                                      "(default '*'; '**/*.vtu' for subfolders)")
    check.add_argument("--split", nargs=3, type=float, metavar=("TRAIN", "VAL", "TEST"),
                       help="train/val/test ratios training will use (refuses too few files for them; "
                            "default: data.split of CONF_DIR/data/mesh_folder.yaml)")
    check.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="config folder of the defaults")
    check.add_argument("--workers", type=int, default=0, help="reader processes (0 = one per CPU)")
    check.set_defaults(handler=cmd_data_check)
    export = data.add_parser("export", help="write built-in generated samples as VTU + JSON files")
    export.add_argument("source", nargs="?", help="built-in source: heat2d, elasticity2d, elasticity3d or flow2d")
    export.add_argument("--data", help="the same, as an option")
    export.add_argument("--out", type=Path, required=True, help="new or empty folder to write into")
    export.add_argument("--num-samples", type=int, default=20)
    export.add_argument("--seed", type=int, default=0)
    export.add_argument("--mesh-size", type=float, help="default: the source's conf/data/<name>.yaml")
    export.add_argument("--max-holes", type=int, help="default: the source's conf/data/<name>.yaml")
    export.add_argument("--workers", type=int, default=0, help="generator processes (0 = one per CPU)")
    export.add_argument("--conf", type=Path, default=DEFAULT_CONF, help="config folder of the defaults")
    export.set_defaults(handler=cmd_data_export)

    diagnose = commands.add_parser("diagnose", help="diagnose a run's training curves (or rank a sweep's)")
    diagnose.add_argument("path", help="run directory of `python train.py`, or a multirun/<date>/<time> sweep")
    diagnose.set_defaults(handler=cmd_diagnose)

    plot = commands.add_parser("plot", help="PNGs of runs' loss curves, side by side")
    plot.add_argument("runs", nargs="+", help="run directories (folders holding metrics.jsonl)")
    plot.add_argument("--out", type=Path, default=Path("plots"), help="folder for the PNGs (default ./plots)")
    plot.set_defaults(handler=cmd_plot)

    board = commands.add_parser("tensorboard", help="TensorBoard over outputs/ and multirun/ together "
                                "(single runs and sweeps)")
    board.add_argument("folders", nargs="*", help="run folders (default: outputs and multirun, where present)")
    board.add_argument("--port", type=int, default=6006, help="TensorBoard's port (default 6006)")
    board.add_argument("--host", default="localhost", help="address to serve on (0.0.0.0: every interface)")
    board.set_defaults(handler=cmd_tensorboard)

    package = commands.add_parser("export", help="write a model package from a run directory or checkpoint")
    package.add_argument("source", help="run directory (its best.ckpt; a staged run's last finished stage) "
                                        "or .ckpt file")
    package.add_argument("out", type=Path, help="new folder for the package")
    package.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                         help="dtype the weights are stored in (default fp32)")
    package.add_argument("--prune", type=float, default=0.0, metavar="FRACTION",
                         help="L1-prune this fraction of every Linear layer's weights (e.g. 0.2)")
    package.add_argument("--program", action="store_true",
                         help="also write program.pt2, a torch.export program of the model")
    package.add_argument("--no-test", action="store_true",
                         help="skip measuring the package on the run's test split")
    package.add_argument("--data-dir", type=Path, help="dataset cache for that test (default: the run's "
                                                       "paths.data_dir)")
    package.add_argument("--device", default="auto", help="device of that test: auto, cpu or cuda[:N]")
    package.set_defaults(handler=cmd_export)

    predict = commands.add_parser("predict", help="predict fields on mesh files, write them as VTU")
    predict.add_argument("model", help="package folder, run directory or .ckpt file")
    predict.add_argument("files", nargs="+", type=Path, help="mesh files or folders of them (any meshio format)")
    predict.add_argument("--out", type=Path, required=True,
                         help="folder for the VTU files, predictions.csv and predictions.json")
    _globals_option(predict)
    _inference_options(predict)
    _folder_options(predict)
    predict.set_defaults(handler=cmd_predict)

    evaluate = commands.add_parser("evaluate", help="test metrics of a model on a data config or mesh files")
    evaluate.add_argument("model", help="package folder, run directory or .ckpt file")
    evaluate.add_argument("data", help="a data config (the model's own, e.g. heat2d: its test split) or a mesh "
                                       "file or folder (every file, with its true fields)")
    evaluate.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                          help="changes to the data config, e.g. data.mesh_size=0.05 data.num_samples=40")
    evaluate.add_argument("--out", type=Path, metavar="FILE.json", help="also write the metrics as JSON")
    evaluate.add_argument("--data-dir", type=Path, help="dataset cache (default: the run's paths.data_dir)")
    _globals_option(evaluate)
    _inference_options(evaluate)
    evaluate.set_defaults(handler=cmd_evaluate)

    ensemble = commands.add_parser("ensemble", help="average several models: test table, predictions")
    ensemble.add_argument("members", nargs="*", help="package folders, run directories or .ckpt files")
    ensemble.add_argument("--sweep", help="multirun/<date>/<time> of an Optuna sweep: add its best trials")
    ensemble.add_argument("--top-k", type=int, default=5, help="how many of the sweep's best trials (default 5)")
    ensemble.add_argument("--predict", nargs="+", type=Path, metavar="FILE",
                          help="mesh files or folders to predict on (with --out)")
    ensemble.add_argument("--out", type=Path, help="folder for the predicted VTU files")
    ensemble.add_argument("--no-test", action="store_true", help="skip the test-split table")
    _globals_option(ensemble)
    ensemble.add_argument("--data-dir", type=Path, default=Path("data_cache"),
                          help="dataset cache of the members' data (default ./data_cache, as train.py)")
    _inference_options(ensemble)
    _folder_options(ensemble)
    ensemble.set_defaults(handler=cmd_ensemble)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run one subcommand inside the error boundary (meshgnn.boundary): a user's mistake, also
    one a library reports, is one `error:` line and its exit code; a bug keeps its traceback."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["train"]:
        from meshgnn.train import run

        return run(argv[1:])
    args = build_parser().parse_args(argv)
    guarded(lambda: args.handler(args))


if __name__ == "__main__":
    main()
