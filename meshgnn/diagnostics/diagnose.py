"""Automatic diagnosis of training curves: the tool reads metrics.jsonl so the user does not have to.

`diagnose_history(history, config)` is a pure function of a run's epoch records (as in
metrics.jsonl) and its resolved config. It returns one `Finding` per symptom, always in the
order of `SYMPTOMS`, each either a "problem" (with overrides to try), "ok", or "skipped" (with the
reason: too few epochs, a tag an older run did not log, non-finite values). Every test is a
number compared with a named threshold below; the comment of each threshold says why that value.

Reading run and sweep directories (and `meshgnn diagnose PATH`) is in
`meshgnn.diagnostics.runs`; this module holds the rules, the verdict and its formatting.


Slopes are least-squares slopes over the epoch numbers divided by the mean absolute value of the
series: "fraction of its size per epoch", comparable between losses of different scales.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


SYMPTOMS = ("diverged", "not_decreasing", "oscillating", "target_imbalance", "overfitting", "under_trained",
            "consistency_not_decreasing")

TRAIN_LOSS = "train/loss/total"
VAL_LOSS = "val/loss/total"
CONSISTENCY = "consistency/grad"
OSCILLATION = "train/loss/oscillation"
GRAD_NORM = "train/grad_norm"

# --- diverged --------------------------------------------------------------------------------
# A loss this many times its first epoch's value is a run blowing up, whatever else the curve
# does: the default of trainer.divergence_factor, which stops such runs while they train. Also a
# problem: any non-finite loss, and a launch that stopped as diverged (run.json records it).
DIVERGED_FACTOR = 1000.0

# --- not_decreasing --------------------------------------------------------------------------
# The training loss must fall by at least 5 % from the first to the last epoch. Epoch 1's value is
# the mean over its steps, so even its own late steps pull the next epochs well below it: healthy
# runs drop 30-50 % within the first 4 epochs (heat2d and elasticity2d at the defaults). Less than
# 5 % over a whole run is within batch noise of "nothing learnt".
NOT_DECREASING_MIN_DROP = 0.05
# ... and its trend over the run must point down. A normalised slope above 0 means the loss rose
# on balance (e.g. it dropped once and then crept back up), whatever the first->last change says.
NOT_DECREASING_MAX_SLOPE = 0.0

# --- oscillating -----------------------------------------------------------------------------
# Median over epochs of train/loss/oscillation (std of an epoch's step losses around their linear
# trend, over their mean). Healthy runs with batch_size 4 measure 0.08-0.18 (step losses of the
# long heat2d and elasticity2d runs in outputs/); batch_size 1 would roughly double that
# (sqrt(4) more sample noise) to ~0.36. 0.5 means steps routinely jump by half the loss: the
# optimiser is bouncing off the walls of the valley, not sampling noise.
OSCILLATION_MAX = 0.5
# Epoch-to-epoch: a zig-zag of the train loss (the differences change sign at least this often)...
SIGN_CHANGE_MIN_FRACTION = 0.5
# ... whose upward steps are big: on average at least 5 % of the loss before them. A plateau also
# zig-zags, but by < 1 %; healthy runs rose at most 2.3 % (long heat2d run, 34 epochs).
OSCILLATION_MIN_RISE = 0.05

# --- target_imbalance ------------------------------------------------------------------------
# Worst target's val/{t}/l1 (normalised units, comparable between targets) over the median of
# the others, at the last epoch. Targets differ in difficulty in healthy runs too: heat_flux (a
# derivative of temperature) ends 1.7-2.5x temperature's l1 in heat2d (~2.2 at the defaults), and
# von_mises 1.8-2.8x displacement's in elasticity2d, the ratio growing slowly as training goes
# on. 4.0 leaves ~40 % above the largest healthy ratio seen; a target 4x worse than its peers is
# being given up on by the optimiser.
TARGET_IMBALANCE_MAX_RATIO = 4.0

# --- overfitting -----------------------------------------------------------------------------
# Looked for over the last third of the epochs (at least this many): fewer points give a slope
# that one noisy validation epoch decides.
OVERFIT_MIN_EPOCHS = 3
# Val slope > 0 and train slope < 0 over that window, and the last val loss at least 5 % above
# the best: validation loss wobbles by a few % between epochs in healthy runs (the long heat2d run
# sat up to 5.8 % above its best for a few epochs mid-run and recovered); a run that ends 5 %
# above its best while train still falls is paying for memorising the training meshes.
OVERFIT_MIN_VAL_RISE = 1.05

# --- under_trained ---------------------------------------------------------------------------
# The best val epoch is the last one and val still improved by more than 2 % per epoch over the
# last third of the run (at least the last 2 epochs). A cosine schedule ends with the rate near
# zero, where val gains well under 1 %/epoch, so a run still gaining 2 %/epoch at its end had
# much more to gain (doubling the epochs would plausibly cut val by a further tens of %). For
# scale: the long elasticity2d run in outputs/ (stopped by max_time at epoch 57 of 70, lr down
# to 1e-4) gained 1.0 %/epoch over its last third; the heat2d one (stopped at 56 of 70) 2.1 %,
# with val at its best on the last epoch: that one is flagged, and resuming it is right.
UNDER_TRAINED_MIN_IMPROVEMENT = 0.02
UNDER_TRAINED_MIN_EPOCHS = 2

# --- consistency_not_decreasing --------------------------------------------------------------
# consistency/grad (the validation gradient-consistency loss) must fall by more than 5 % first->
# last. Healthy runs cut it 35-45 % even in stage 1, where it has no weight; under 5 % over a
# whole run means derivatives of the fields (fluxes, strains) are not being learnt.
CONSISTENCY_MAX_CHANGE = -0.05

# Generic values for advice when the config is unknown (the defaults of conf/).
DEFAULT_LR = 1e-3


@dataclass
class Finding:
    symptom: str                 # stable id, one of SYMPTOMS
    status: str                  # "problem" | "ok" | "skipped"
    measured: dict[str, Any]     # the numbers computed
    rule: str                    # the test and its threshold, in words
    message: str                 # one sentence for users (for "skipped": the reason)
    advice: list[str] = field(default_factory=list)  # overrides / commands to try


@dataclass
class Diagnosis:
    run_dir: str
    findings: list[Finding]
    epochs: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.status == "problem"]

    def lines(self) -> list[str]:
        problems = self.problems
        verdict = (f"{len(problems)} problem(s): {', '.join(f.symptom for f in problems)}" if problems
                   else "no problems found")
        out = [f"diagnosis of {self.run_dir} ({self.epochs} epochs): {verdict}"]
        out += [f"note: {note}" for note in self.notes]
        for f in self.findings:
            if f.status == "problem":
                line = f"PROBLEM {f.symptom}: {f.message} (measured {_format_measured(f.measured)}; rule {f.rule})"
                if f.advice:
                    line += " -> try: " + "; ".join(f.advice)
            elif f.status == "ok":
                line = f"ok {f.symptom}: {f.message} (measured {_format_measured(f.measured)})"
            else:
                line = f"skipped {f.symptom}: {f.message}"
            out.append(line)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "epochs": self.epochs,
                "problems": [f.symptom for f in self.problems], "notes": list(self.notes),
                "findings": [_json_safe(asdict(f)) for f in self.findings]}

    def to_json(self) -> str:
        """Strict JSON: non-finite numbers are written as the strings "nan"/"inf"/"-inf"
        (as in metrics.jsonl)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


# ============================================================================= the checks


def diagnose_history(history: list[dict], config: dict | None, run_dir: str | None = None,
                     stopped: dict | None = None) -> list[Finding]:
    """One Finding per symptom of SYMPTOMS, in that order. `history` holds metrics.jsonl's
    records, `config` the resolved config (None: advice uses generic values), `run_dir` goes
    into commands of the advice (a placeholder when None), `stopped` the last launch's stop
    record from run.json (a divergence the trainer refused to save)."""
    records = _sorted_records(history)
    ctx = _Context(records, config or {}, config is not None, run_dir or "<run dir>")
    return [_diverged(records, stopped, ctx.get_number("optim.lr")), _not_decreasing(ctx), _oscillating(ctx), _target_imbalance(ctx), _overfitting(ctx),
            _under_trained(ctx), _consistency(ctx)]


@dataclass
class _Series:
    epochs: list[float]
    values: list[float]
    nonfinite: list[int]   # epochs whose value is nan/inf
    missing: int           # records without the tag


class _Context:
    def __init__(self, records: list[dict], config: dict, has_config: bool, run_dir: str) -> None:
        self.records, self.config, self.has_config, self.run_dir = records, config, has_config, run_dir
        last = records[-1].get("epoch") if records else None
        self.last_epoch = int(_number(last)) if _is_number(last) else len(records)

    def series(self, key: str) -> _Series:
        epochs, values, nonfinite, missing = [], [], [], 0
        for i, record in enumerate(self.records):
            value = _number(record.get(key))
            epoch = _number(record.get("epoch"))
            epoch = epoch if epoch is not None and math.isfinite(epoch) else float(i + 1)
            if value is None:
                missing += 1
            elif not math.isfinite(value):
                nonfinite.append(int(epoch))
            else:
                epochs.append(epoch)
                values.append(value)
        return _Series(epochs, values, nonfinite, missing)

    def get(self, dotted: str) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def get_number(self, dotted: str) -> float | None:
        value = _number(self.get(dotted))
        return value if value is not None and math.isfinite(value) else None


def _skip(symptom: str, reason: str, rule: str, **measured: Any) -> Finding:
    return Finding(symptom, "skipped", measured, rule, reason)


def _usable(ctx: _Context, s: _Series, key: str, symptom: str, rule: str, need: int) -> Finding | None:
    """A skipped Finding when `key` cannot be judged: not logged, non-finite, too few epochs."""
    if s.missing == len(ctx.records) or not ctx.records:
        return _skip(symptom, f"{key} is not in metrics.jsonl (a run older than this check?)", rule)
    if s.nonfinite:
        return _skip(symptom, f"{key} is not finite at epoch(s) {_epoch_list(s.nonfinite)} "
                              f"(see oscillating: the run diverged)", rule)
    if len(s.values) < need:
        return _skip(symptom, f"needs at least {need} epochs of {key}, the run has {len(s.values)}", rule,
                     epochs=len(s.values))
    return None


def _diverged(records: list[dict], stopped: dict | None, lr: float | None) -> Finding:
    """Problem when the trainer stopped the run as diverged, a loss is non-finite, or a loss
    rose DIVERGED_FACTOR times above its first epoch; never skipped (a run with one epoch or
    none can still have diverged). Advice: a tenth of the run's rate, and clipping."""
    advice = [f"optim.lr={_fmt(lr / 10) if lr else '<a tenth of the current>'}", "trainer.grad_clip=1.0"]
    rule = f"no non-finite loss, no loss above {DIVERGED_FACTOR:g} x its first epoch, no diverged stop"
    if stopped and stopped.get("reason") == "diverged":
        return Finding("diverged", "problem", {"metric": stopped.get("metric"), "epoch": stopped.get("epoch"),
                                               "value": stopped.get("value")}, rule,
                       f"training stopped as diverged: {stopped.get('message', '')}", advice)
    for key in (TRAIN_LOSS, VAL_LOSS):
        values = [(r["epoch"], _number(r.get(key))) for r in records if key in r]
        bad = next(((epoch, v) for epoch, v in values if v is None or not math.isfinite(v)), None)
        if bad is not None:
            return Finding("diverged", "problem", {"metric": key, "epoch": bad[0]}, rule,
                           f"{key} is not finite at epoch {bad[0]}", advice)
        if values and values[0][1] > 0:
            epoch, peak = max(values, key=lambda item: item[1])
            if peak > DIVERGED_FACTOR * values[0][1]:
                return Finding("diverged", "problem", {"metric": key, "epoch": epoch, "ratio": peak / values[0][1]},
                               rule, f"{key} rose to {peak:.4g} at epoch {epoch}, over {DIVERGED_FACTOR:g} x its "
                               f"first epoch's {values[0][1]:.4g}", advice)
    return Finding("diverged", "ok", {}, rule, "losses stayed finite and near their start")


def _not_decreasing(ctx: _Context) -> Finding:
    symptom = "not_decreasing"
    rule = (f"{TRAIN_LOSS} falls by less than {NOT_DECREASING_MIN_DROP:.0%} first->last, or its "
            f"normalised least-squares slope is > {NOT_DECREASING_MAX_SLOPE:g}/epoch")
    s = ctx.series(TRAIN_LOSS)
    if (skipped := _usable(ctx, s, TRAIN_LOSS, symptom, rule, need=2)) is not None:
        return skipped
    change = _relative_change(s.values[0], s.values[-1])
    slope = _normalised_slope(s.epochs, s.values)
    measured = {"first": s.values[0], "last": s.values[-1], "relative_change": change, "slope_per_epoch": slope}
    if change > -NOT_DECREASING_MIN_DROP or slope > NOT_DECREASING_MAX_SLOPE:
        lr = ctx.get_number("optim.lr")
        advice = [f"optim.lr={_fmt(_raised_lr(lr))}"]
        data_path = ctx.get("data.path")
        if isinstance(data_path, str) and data_path:
            advice.append(f"meshgnn data check {data_path}")
        return Finding(symptom, "problem", measured, rule,
                       f"the training loss is not going down ({change:+.1%} from epoch "
                       f"{int(s.epochs[0])} to {int(s.epochs[-1])}): the learning rate may be too low, "
                       f"or the inputs may not determine the targets (check the data)", advice)
    return Finding(symptom, "ok", measured, rule, f"the training loss fell {-change:.0%}")


def _oscillating(ctx: _Context) -> Finding:
    symptom = "oscillating"
    rule = (f"any non-finite {TRAIN_LOSS} (diverged); or median {OSCILLATION} > {OSCILLATION_MAX:g}; or, "
            f"with >= 3 epochs, epoch-to-epoch differences of {TRAIN_LOSS} change sign in >= "
            f"{SIGN_CHANGE_MIN_FRACTION:.0%} of places with upward steps averaging >= {OSCILLATION_MIN_RISE:.0%}")
    s = ctx.series(TRAIN_LOSS)
    if not ctx.records or s.missing == len(ctx.records):
        return _skip(symptom, f"{TRAIN_LOSS} is not in metrics.jsonl", rule)
    lr, clip = ctx.get_number("optim.lr"), ctx.get_number("trainer.grad_clip")
    advice = [f"optim.lr={_fmt(lr / 5 if lr is not None else 2e-4)}"]
    if clip is None or clip <= 0 or clip > 3.0:   # unknown, off, or loose: clip at 3
        advice.append("trainer.grad_clip=3.0")
    measured: dict[str, Any] = {}
    grads = ctx.series(GRAD_NORM)
    if grads.values:
        measured["median_grad_norm"] = statistics.median(grads.values)
    if clip is not None:
        measured["grad_clip"] = clip
    if s.nonfinite:
        measured["nonfinite_epochs"] = s.nonfinite
        return Finding(symptom, "problem", measured, rule,
                       f"the training diverged: {TRAIN_LOSS} is not finite at epoch(s) "
                       f"{_epoch_list(s.nonfinite)}; lower the learning rate and clip gradients", advice)
    osc = ctx.series(OSCILLATION)
    reasons = []
    if osc.values:
        measured["median_oscillation"] = statistics.median(osc.values)
        if measured["median_oscillation"] > OSCILLATION_MAX:
            reasons.append(f"step losses scatter by {measured['median_oscillation']:.0%} of the loss within an epoch")
    if len(s.values) >= 3:
        diffs = [b - a for a, b in zip(s.values, s.values[1:])]
        signs = [d for d in diffs if d != 0]
        flips = sum(1 for a, b in zip(signs, signs[1:]) if (a > 0) != (b > 0))
        rises = [d / abs(before) for d, before in zip(diffs, s.values) if d > 0 and before != 0]
        measured["sign_change_fraction"] = flips / max(len(signs) - 1, 1)
        measured["mean_rise"] = sum(rises) / len(rises) if rises else 0.0
        if (measured["sign_change_fraction"] >= SIGN_CHANGE_MIN_FRACTION
                and measured["mean_rise"] >= OSCILLATION_MIN_RISE):
            reasons.append(f"the epoch loss zig-zags, rising {measured['mean_rise']:.0%} on average when it rises")
    if not osc.values and len(s.values) < 3:
        return _skip(symptom, f"needs {OSCILLATION} (not logged by this run) or at least 3 epochs, "
                              f"the run has {len(s.values)}", rule, **measured)
    if reasons:
        tail = "" if len(advice) > 1 else f" (gradients are already clipped at {_fmt(clip)})"
        return Finding(symptom, "problem", measured, rule,
                       f"the training loss oscillates: {'; '.join(reasons)}; the learning rate is "
                       f"probably too high{tail}", advice)
    return Finding(symptom, "ok", measured, rule, "the training loss moves smoothly")


_TARGET_L1 = re.compile(r"^val/(?P<target>[^/]+)/l1$")


def _target_imbalance(ctx: _Context) -> Finding:
    symptom = "target_imbalance"
    rule = (f"at the last epoch, worst val/{{t}}/l1 / median of the other targets' > "
            f"{TARGET_IMBALANCE_MAX_RATIO:g}")
    if not ctx.records:
        return _skip(symptom, "no epochs", rule)
    last = ctx.records[-1]
    targets = sorted(m["target"] for key in last if (m := _TARGET_L1.match(key)) and m["target"] != "loss")
    if len(targets) < 2:
        return _skip(symptom, f"needs at least 2 targets with val/{{t}}/l1, the run has {len(targets)}", rule)
    values = {t: _number(last[f"val/{t}/l1"]) for t in targets}
    bad = [t for t, v in values.items() if v is None or not math.isfinite(v)]
    if bad:
        return _skip(symptom, f"val/{{t}}/l1 is not finite at the last epoch for {', '.join(bad)}", rule)
    worst = max(targets, key=lambda t: values[t])
    others = statistics.median(values[t] for t in targets if t != worst)
    ratio = values[worst] / others if others > 0 else math.inf
    measured = {"val_l1": values, "worst": worst, "ratio": ratio}
    if ratio > TARGET_IMBALANCE_MAX_RATIO:
        # `+` adds a key the group's defaults lack (target_weights is {} by default); `++` adds or
        # sets, for a weight the run already had (set again on the command line or by a preset)
        weights = ctx.get("loss.target_weights")
        prefix = "+" if ctx.has_config and not (isinstance(weights, dict) and worst in weights) else "++"
        weight = _number(weights.get(worst)) if isinstance(weights, dict) else None
        fourier = ctx.get_number("data.fourier_features")
        hidden = ctx.get_number("model.hidden_dim")
        advice = [f"{prefix}loss.target_weights.{worst}={_fmt(_raised(weight, 2.0, 2.0), decimal=True)}",
                  f"data.fourier_features={int(max(32, 2 * fourier) if fourier is not None else 32)}",
                  f"model.hidden_dim={int(2 * hidden) if hidden is not None else 512}"]
        return Finding(symptom, "problem", measured, rule,
                       f"{worst} fits {ratio:.1f}x worse than the other targets: give it more weight "
                       f"or the model more capacity (a new run: these change the network)", advice)
    return Finding(symptom, "ok", measured, rule,
                   f"the targets fit comparably (worst, {worst}, is {ratio:.1f}x the others)")


def _overfitting(ctx: _Context) -> Finding:
    symptom = "overfitting"
    rule = (f"over the last third of the epochs (>= {OVERFIT_MIN_EPOCHS}): slope of {VAL_LOSS} > 0, "
            f"slope of {TRAIN_LOSS} < 0, and last val >= {OVERFIT_MIN_VAL_RISE:g} x best val")
    val, train = ctx.series(VAL_LOSS), ctx.series(TRAIN_LOSS)
    for s, key in ((val, VAL_LOSS), (train, TRAIN_LOSS)):
        if (skipped := _usable(ctx, s, key, symptom, rule, need=OVERFIT_MIN_EPOCHS)) is not None:
            return skipped
    window = max(OVERFIT_MIN_EPOCHS, math.ceil(len(val.values) / 3))
    val_slope = _normalised_slope(val.epochs[-window:], val.values[-window:])
    train_window = max(OVERFIT_MIN_EPOCHS, math.ceil(len(train.values) / 3))
    train_slope = _normalised_slope(train.epochs[-train_window:], train.values[-train_window:])
    best = min(val.values)
    rise = val.values[-1] / best if best > 0 else math.inf
    measured = {"window_epochs": window, "val_slope_per_epoch": val_slope, "train_slope_per_epoch": train_slope,
                "last_val": val.values[-1], "best_val": best, "last_over_best": rise}
    if val_slope > 0 and train_slope < 0 and rise >= OVERFIT_MIN_VAL_RISE:
        dropout = ctx.get_number("model.dropout")
        smooth = ctx.get_number("loss.smoothness_weight")
        decay = ctx.get_number("optim.weight_decay")
        advice = [f"model.dropout={_fmt(min(0.5, _raised(dropout, 0.15, 2.0)), decimal=True)}",
                  f"loss.smoothness_weight={_fmt(_raised(smooth, 0.15, 2.0), decimal=True)}",
                  f"optim.weight_decay={_fmt(_raised(decay, 1e-4, 10.0))}"]
        return Finding(symptom, "problem", measured, rule,
                       f"validation loss rose to {rise:.2f}x its best while the training loss kept "
                       f"falling: the model memorises the training meshes; regularise it, and use "
                       f"best.ckpt (epoch of the best val)", advice)
    return Finding(symptom, "ok", measured, rule, "validation loss follows the training loss")


def _under_trained(ctx: _Context) -> Finding:
    symptom = "under_trained"
    rule = (f"best {VAL_LOSS} is at the last epoch and it improved by > {UNDER_TRAINED_MIN_IMPROVEMENT:.0%} "
            f"per epoch (normalised slope) over the last third of the epochs (>= {UNDER_TRAINED_MIN_EPOCHS})")
    val = ctx.series(VAL_LOSS)
    if (skipped := _usable(ctx, val, VAL_LOSS, symptom, rule, need=UNDER_TRAINED_MIN_EPOCHS)) is not None:
        return skipped
    window = max(UNDER_TRAINED_MIN_EPOCHS, math.ceil(len(val.values) / 3))
    improvement = -_normalised_slope(val.epochs[-window:], val.values[-window:])
    best_index = min(range(len(val.values)), key=lambda i: val.values[i])
    best_is_last = best_index == len(val.values) - 1
    measured = {"window_epochs": window, "improvement_per_epoch": improvement,
                "best_epoch": int(val.epochs[best_index]), "last_epoch": int(val.epochs[-1])}
    if best_is_last and improvement > UNDER_TRAINED_MIN_IMPROVEMENT:
        planned = ctx.get_number("trainer.epochs")
        base = int(planned) if planned and planned > 0 else ctx.last_epoch
        more = max(2 * base, ctx.last_epoch + 1)
        advice = [f"trainer.epochs={more}", f"python train.py resume={ctx.run_dir} trainer.epochs={more}"]
        stopped = ""
        if planned and ctx.last_epoch < planned:  # interrupted (max_time, kill) before its planned end
            measured["planned_epochs"] = int(planned)
            stopped = f" (it stopped at epoch {ctx.last_epoch} of {int(planned)}: resuming first finishes those)"
            advice.insert(0, f"python train.py resume={ctx.run_dir}")
        return Finding(symptom, "problem", measured, rule,
                       f"validation loss was still falling {improvement:.1%} per epoch when the run "
                       f"ended{stopped}: train longer (resuming keeps what was learnt)", advice)
    reason = ("the best validation epoch is not the last" if not best_is_last
              else f"validation loss has levelled off ({improvement:.1%}/epoch at the end)")
    return Finding(symptom, "ok", measured, rule, reason)


def _consistency(ctx: _Context) -> Finding:
    symptom = "consistency_not_decreasing"
    rule = f"{CONSISTENCY} relative change first->last >= {CONSISTENCY_MAX_CHANGE:+.0%}"
    s = ctx.series(CONSISTENCY)
    if (skipped := _usable(ctx, s, CONSISTENCY, symptom, rule, need=2)) is not None:
        return skipped
    change = _relative_change(s.values[0], s.values[-1])
    measured = {"first": s.values[0], "last": s.values[-1], "relative_change": change}
    if change >= CONSISTENCY_MAX_CHANGE:
        weight = ctx.get_number("loss.gradient_consistency_weight")
        advice = [f"loss.gradient_consistency_weight={_fmt(_raised(weight, 0.1, 2.0), decimal=True)}"]
        if ctx.get("loss.name") != "stage2":
            # trainer.epochs is the total and init_from continues the epoch counter: it must grow
            advice.append(f"loss=stage2 init_from={ctx.run_dir} trainer.epochs={2 * ctx.last_epoch}")
        return Finding(symptom, "problem", measured, rule,
                       f"the gradient-consistency loss is not going down ({change:+.1%}): derivatives "
                       f"of the fields (fluxes, strains) do not match the physics; weight that term "
                       f"more or continue in stage 2", advice)
    return Finding(symptom, "ok", measured, rule, f"gradient consistency improved {-change:.0%}")


# ============================================================================= helpers


def _sorted_records(history: list[dict]) -> list[dict]:
    """Records by epoch; a later record for the same epoch replaces an earlier one."""
    by_epoch: dict[float, dict] = {}
    unnumbered = []
    for record in history:
        epoch = _number(record.get("epoch"))
        if epoch is None or not math.isfinite(epoch):
            unnumbered.append(record)
        else:
            by_epoch[epoch] = record
    return [by_epoch[e] for e in sorted(by_epoch)] + unnumbered


def _number(value: Any) -> float | None:
    """A metric value as float ("nan"/"inf"/"-inf" strings included); None if absent or not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _is_number(value: Any) -> bool:
    number = _number(value)
    return number is not None and math.isfinite(number)


def _normalised_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs, divided by the mean |y| (fraction of its size per epoch)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    scale = sum(abs(y) for y in ys) / n
    return slope / scale if scale > 0 else 0.0


def _relative_change(first: float, last: float) -> float:
    if first == 0:
        return 0.0 if last == 0 else math.copysign(math.inf, last)
    return (last - first) / abs(first)


def _raised(current: float | None, suggested: float, factor: float) -> float:
    """`suggested` when the current value is unknown or below it, else `factor` x current."""
    if current is None or current < suggested:
        return suggested
    return current * factor


def _raised_lr(current: float | None) -> float:
    """Back to the default 1e-3 from a rate far below it, else 3x the current one."""
    if current is None:
        return DEFAULT_LR
    return DEFAULT_LR if current * 3 < DEFAULT_LR else current * 3


def _fmt(value: float, decimal: bool = False) -> str:
    """A number as one would type it in an override: 2e-4, 1.5e-3, 0.15, 2.0 (decimal=True)."""
    if value != 0 and (abs(value) < 1e-2 or abs(value) >= 1e5):
        mantissa, exponent = f"{value:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exponent)}"
    text = f"{value:.3g}"
    if decimal and "." not in text and "e" not in text:
        text += ".0"
    return text


def _fmt_value(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3g}" if math.isfinite(value) else str(value)
    return str(value)


def _format_measured(measured: dict[str, Any]) -> str:
    parts = []
    for key, value in measured.items():
        if isinstance(value, dict):
            value = "{" + ", ".join(f"{k}: {_fmt_value(v)}" for k, v in value.items()) + "}"
        elif isinstance(value, list):
            value = _epoch_list(value) if all(isinstance(v, int) for v in value) else str(value)
        else:
            value = _fmt_value(value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _epoch_list(epochs: list[int], limit: int = 5) -> str:
    shown = ", ".join(map(str, epochs[:limit]))
    return shown + (f" and {len(epochs) - limit} more" if len(epochs) > limit else "")


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
