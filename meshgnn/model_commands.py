"""The `meshgnn` commands that use a trained model: export, predict, evaluate, ensemble.

Each turns its parsed arguments into calls of meshgnn.inference and prints what it did;
meshgnn.cli parses the command line and dispatches here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from meshgnn.errors import UserError


def _device(name: str):
    from meshgnn.devices import resolve_device

    return resolve_device(name, "--device ")


def _loaded_from(source: Path, package) -> str:
    """The package, or which checkpoint a run directory gave (a staged run: its last finished
    stage's)."""
    from meshgnn.run_layout import final_stage_dir, is_staged

    ckpt = package.origin.get("checkpoint", package.name)
    if package.manifest:
        return f"{package.name} (package, exported from {ckpt})"
    if source.is_dir() and is_staged(source):
        return f"{ckpt} (stage {final_stage_dir(source).name} of the staged run {source})"
    return str(ckpt)


def _rel_l2(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k.split('/')[1]} {v:.4f}" for k, v in metrics.items() if k.endswith("/rel_l2"))


def cmd_export(args: argparse.Namespace) -> None:
    from meshgnn.inference.evaluate import package_test
    from meshgnn.inference.export import check_package_location, store_weights_as, write_package
    from meshgnn.inference.package import load_model

    package = load_model(Path(args.source), args.prune)
    check_package_location(package, args.out)  # before the test, which may take a while
    store_weights_as(package, args.precision)
    test = None if args.no_test else package_test(package, args.data_dir, _device(args.device))
    out = write_package(package, args.out, weight_dtype=args.precision, program=args.program, test=test)
    weights = f"{args.precision}{f', pruned {args.prune:g}' if args.prune else ''}"
    print(f"wrote package {out} from {_loaded_from(Path(args.source), package)} (weights {weights}"
          f"{', program.pt2' if args.program else ''})")
    if test is None:
        print("test not measured (--no-test)")
    elif test["metrics"] is None:
        print(f"test {test['reason']}, and the run has no test numbers of these weights")
    elif test["of"] == "package":
        print(f"package test rel L2 ({weights} weights, {test['reason']}): {_rel_l2(test['metrics'])}")
    else:
        print(f"run test rel L2 ({test['reason']}): {_rel_l2(test['metrics'])}")
    print(f"predict with:  meshgnn predict {out} MESH_FILES --out predictions/")


def _print_file_errors(results) -> None:
    from meshgnn.inference.report import file_error_lines

    lines = file_error_lines(results)
    if lines:
        print("\n".join(lines))


def _predict_timed(members, files: list[Path], args: argparse.Namespace, device, given, failures):
    """`predict_files` with the command's reader and batch options, and how fast it went."""
    import time

    from meshgnn.inference.predict import predict_files
    from meshgnn.inference.report import Throughput

    start = time.perf_counter()
    results = predict_files(members, files, args.out, device, args.precision, given, failures,
                            workers=args.workers, batch_nodes=args.batch_nodes)
    throughput = Throughput.of(results, time.perf_counter() - start, args.workers, args.batch_nodes)
    if results:
        print(throughput.line())
    return results, throughput


def cmd_predict(args: argparse.Namespace) -> None:
    from meshgnn.inference.package import load_model
    from meshgnn.inference.mesh_input import parse_globals
    from meshgnn.inference.report import write_prediction_tables

    package = load_model(Path(args.model), args.prune)
    given = parse_globals(args.globals, package)
    print(f"model {_loaded_from(Path(args.model), package)}")
    failures: list[tuple[str, str]] = []
    results, throughput = _predict_timed([package], args.files, args, _device(args.device), given, failures)
    if results:
        tables = write_prediction_tables(results, args.out, package.name, throughput)
        print(f"wrote {len(results)} VTU file(s) with predicted_<target> fields to {args.out}, and "
              f"{' and '.join(p.name for p in tables)}")
        _print_file_errors(results)
    _refuse_failures(failures, len(results))


def _refuse_failures(failures: list[tuple[str, str]], predicted: int) -> None:
    """Each file the model could not take, one line each on stderr, then exit 2; one line in
    all when no file could be predicted."""
    if not failures:
        return
    if not predicted:  # nothing fitted the model: most likely one cause, said once
        more = f" (and {len(failures) - 1} more file(s) refused; fix the first, then run again)" if len(failures) > 1 else ""
        raise UserError(failures[0][1] + more)
    for _, reason in failures:
        print(f"error: {reason}", file=sys.stderr)
    raise UserError(f"{len(failures)} of {len(failures) + predicted} file(s) could not be predicted "
                    "(one line each above); the others were written")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from meshgnn.atomic import atomic_write_text
    from meshgnn.experiment import format_results_table
    from meshgnn.inference.evaluate import evaluate_target
    from meshgnn.inference.package import load_model

    package = load_model(Path(args.model), args.prune)
    print(f"model {_loaded_from(Path(args.model), package)}")
    doc = evaluate_target(package, args.data, args.overrides, args.data_dir, _device(args.device),
                          args.precision, args.globals)
    print(f"test metrics on {doc['evaluated']['on']} ({doc['evaluated']['num_meshes']} meshes, physical units):")
    print(format_results_table(doc, package.targets))
    if args.out is not None:
        atomic_write_text(args.out, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.out}")


def cmd_ensemble(args: argparse.Namespace) -> None:
    from meshgnn.inference.ensemble import evaluate_on_test, load_members, sweep_members
    from meshgnn.inference.mesh_input import parse_globals
    from meshgnn.inference.predict import plan_outputs

    paths = [Path(p) for p in args.members]
    if args.sweep:
        paths += sweep_members(Path(args.sweep), args.top_k)
    if bool(args.predict) != bool(args.out):
        raise UserError("--predict FILES and --out DIR go together: pass both to write predictions")
    members = load_members(paths, args.prune)
    given = parse_globals(args.globals, members[0])
    if args.predict:  # refused now rather than after the test table
        plan_outputs(members, args.predict, args.out)
    device = _device(args.device)
    print(f"ensemble of {len(members)}: " + ", ".join(m.name for m in members))
    if not args.no_test:
        table = evaluate_on_test(members, args.data_dir, device, args.precision)
        print(f"test split ({table.num_graphs} meshes, physical units):")
        print("\n".join(table.lines([n for n, _ in members[0].targets])))
    if args.predict:
        from meshgnn.inference.report import write_prediction_tables

        failures: list[tuple[str, str]] = []
        results, throughput = _predict_timed(members, args.predict, args, device, given, failures)
        if results:
            write_prediction_tables(results, args.out, f"ensemble of {', '.join(m.name for m in members)}",
                                    throughput)
            print(f"wrote {len(results)} VTU file(s) with predicted_<target> (mean) and std_<target> fields, "
                  f"predictions.csv and predictions.json to {args.out}")
            _print_file_errors(results)
        _refuse_failures(failures, len(results))
