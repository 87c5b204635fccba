"""Automatic diagnosis of training curves: the tool reads metrics.jsonl so the user does not have to.

`diagnose_history(history, config)` is a pure function of a run's epoch records (as in
metrics.jsonl) and its resolved config. It returns one `Finding` per symptom, always in the
order of `SYMPTOMS`, each either a "problem" (with overrides to try), "ok", or "skipped" (with the
reason: too few epochs, a tag an older run did not log, non-finite values). Every test is a
number compared with a named threshold below; the comment of each threshold says why that value.

Reading run and sweep directories (and `meshgnn diagnose PATH`) is in
`meshgnn.diagnostics.runs`; what a finding holds and how it is written, in
`meshgnn.diagnostics.verdict`; this module holds the rules.


Slopes are least-squares slopes over the epoch numbers divided by the mean absolute value of the
series: "fraction of its size per epoch", comparable between losses of different scales.
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any

from meshgnn.diagnostics.history import (Context, Series, normalised_slope, number, relative_change,
                                        sorted_records)
from meshgnn.diagnostics.verdict import Finding, epoch_list, override_number


SYMPTOMS = ("diverged", "not_decreasing", "oscillating", "target_imbalance", "overfitting", "under_trained",
            "consistency_not_decreasing")

TRAIN_LOSS = "train/loss/total"
VAL_LOSS = "val/loss/total"
CONSISTENCY = "consistency/grad"
OSCILLATION = "train/loss/oscillation"
GRAD_NORM = "train/grad_norm"
_TARGET_L1 = re.compile(r"^val/(?P<target>[^/]+)/l1$")
_SPLIT_TARGET_L1 = re.compile(r"^(train|val)/(?P<target>[^/]+)/l1$")
_TOTAL_L1 = {"train/loss/l1", "val/loss/l1"}  # the sum over targets, not one target's

# --- diverged --------------------------------------------------------------------------------
# A loss this many times its first epoch's value is a run blowing up, whatever else the curve
# does: the default of trainer.divergence_factor, which stops such runs while they train. Also a
# problem: any non-finite loss, and a launch that stopped as diverged (run.json records it).
DIVERGED_FACTOR = 1000.0
# ... also when a target's l1 (train/{t}/l1 or val/{t}/l1) exceeds 100 at any epoch. Targets are
# normalised to zero mean and unit std on the training split, so predicting the mean scores ~0.8
# (E|z| of a standard normal) and healthy runs start below 1 (0.15-0.45 per target at epoch 1 of
# heat2d debug runs). 100 is a prediction a hundred standard deviations off: a rate that blew up
# within epoch 1 (optim.lr=3 gave 1e4 there), which makes the first epoch a useless reference.
DIVERGED_L1 = 100.0
# Advice for a diverged run: clip gradients at this norm at most (conf's default is 1.0) ...
DIVERGED_GRAD_CLIP = 1.0
# ... and, when it blew up in its first epoch, ramp the rate up over at least one epoch (the
# default warmup is 0.3 epochs), so Adam's moment estimates settle before full-size steps.
DIVERGED_WARMUP_EPOCHS = 1.0
# The symptoms that are not judged once a run diverged: a curve that blew up and recovered
# "falls" and "still improves", and advice to train longer or regularise would mislead.
# oscillating is still judged: its advice (a lower rate, clipping) points the same way.
NOT_JUDGED_AFTER_DIVERGENCE = ("not_decreasing", "target_imbalance", "overfitting", "under_trained",
                               "consistency_not_decreasing")

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


# ============================================================================= the checks


def diagnose_history(history: list[dict], config: dict | None, run_dir: str | None = None,
                     stopped: dict | None = None) -> list[Finding]:
    """One Finding per symptom of SYMPTOMS, in that order. `history` holds metrics.jsonl's
    records, `config` the resolved config (None: advice uses generic values), `run_dir` goes
    into commands of the advice (a placeholder when None), `stopped` the last launch's stop
    record from run.json (a divergence the trainer refused to save)."""
    ctx = Context(sorted_records(history), config or {}, config is not None, run_dir or "<run dir>")
    diverged = _diverged(ctx, stopped)
    findings = [diverged, _not_decreasing(ctx), _oscillating(ctx), _target_imbalance(ctx), _overfitting(ctx),
                _under_trained(ctx), _consistency(ctx)]
    if diverged.status != "problem":
        return findings
    return [_skip(f.symptom, "not judged: the run diverged (see diverged); fix that first", f.rule)
            if f.symptom in NOT_JUDGED_AFTER_DIVERGENCE else f for f in findings]


def _skip(symptom: str, reason: str, rule: str, **measured: Any) -> Finding:
    return Finding(symptom, "skipped", measured, rule, reason)


def _usable(ctx: Context, s: Series, key: str, symptom: str, rule: str, need: int) -> Finding | None:
    """A skipped Finding when `key` cannot be judged: not logged, non-finite, too few epochs."""
    if s.missing == len(ctx.records) or not ctx.records:
        return _skip(symptom, f"{key} is not in metrics.jsonl (a run older than this check?)", rule)
    if s.nonfinite:
        return _skip(symptom, f"{key} is not finite at epoch(s) {epoch_list(s.nonfinite)} "
                              f"(see diverged)", rule)
    if len(s.values) < need:
        return _skip(symptom, f"needs at least {need} epochs of {key}, the run has {len(s.values)}", rule,
                     epochs=len(s.values))
    return None


def _diverged(ctx: Context, stopped: dict | None) -> Finding:
    """Problem when the trainer stopped the run as diverged, a loss is non-finite, a loss rose
    DIVERGED_FACTOR times above its first epoch, or a target's l1 reached DIVERGED_L1; never
    skipped (a run with one epoch or none can still have diverged)."""
    rule = (f"no non-finite loss, no loss above {DIVERGED_FACTOR:g} x its first epoch, no {{split}}/{{t}}/l1 "
            f"above {DIVERGED_L1:g} (normalised units), no diverged stop")
    if stopped and stopped.get("reason") == "diverged":
        measured = {"metric": stopped.get("metric"), "epoch": stopped.get("epoch"), "value": stopped.get("value")}
        return Finding("diverged", "problem", measured, rule, f"training stopped as diverged: "
                       f"{stopped.get('message', '')}", _divergence_advice(ctx, stopped.get("epoch")))
    for key in (TRAIN_LOSS, VAL_LOSS):
        s = ctx.series(key)
        if s.nonfinite:
            return Finding("diverged", "problem", {"metric": key, "epoch": s.nonfinite[0]}, rule,
                           f"{key} is not finite at epoch(s) {epoch_list(s.nonfinite)}",
                           _divergence_advice(ctx, s.nonfinite[0]))
        if s.values and s.values[0] > 0:
            peak = max(range(len(s.values)), key=lambda i: s.values[i])
            ratio = s.values[peak] / s.values[0]
            if ratio > DIVERGED_FACTOR:
                return Finding("diverged", "problem", {"metric": key, "epoch": int(s.epochs[peak]), "ratio": ratio},
                               rule, f"{key} rose to {s.values[peak]:.4g} at epoch {int(s.epochs[peak])}, over "
                               f"{DIVERGED_FACTOR:g} x its first epoch's {s.values[0]:.4g}",
                               _divergence_advice(ctx, int(s.epochs[peak])))
    tags = sorted({key for record in ctx.records for key in record if _SPLIT_TARGET_L1.match(key)} - _TOTAL_L1)
    peaks = [(max(s.values), key, s) for key in tags if (s := ctx.series(key)).values]
    if peaks and max(peaks, key=lambda p: p[0])[0] > DIVERGED_L1:
        value, key, s = max(peaks, key=lambda p: p[0])
        epoch = int(s.epochs[s.values.index(value)])
        return Finding("diverged", "problem", {"metric": key, "epoch": epoch, "value": value}, rule,
                       f"{key} reached {value:.4g} at epoch {epoch}: predictions {value:.3g} standard deviations "
                       f"off on average, where predicting the mean scores ~0.8; the run blew up",
                       _divergence_advice(ctx, epoch))
    return Finding("diverged", "ok", {"max_target_l1": max(p[0] for p in peaks)} if peaks else {}, rule,
                   "losses stayed finite and near their start")


def _divergence_advice(ctx: Context, epoch: Any) -> list[str]:
    """A tenth of the rate; clipping at 1.0 unless it is already as tight; a warmup when the
    run blew up in its first epoch with little or none."""
    lr, clip = ctx.get_number("optim.lr"), ctx.get_number("trainer.grad_clip")
    warmup = ctx.get_number("optim.warmup_epochs")
    advice = [f"optim.lr={override_number(lr / 10) if lr else '<a tenth of the current>'}"]
    if clip is None or clip <= 0 or clip > DIVERGED_GRAD_CLIP:
        advice.append(f"trainer.grad_clip={DIVERGED_GRAD_CLIP:g}")
    if epoch == 1 and (warmup is None or warmup < DIVERGED_WARMUP_EPOCHS):
        advice.append(f"optim.warmup_epochs={DIVERGED_WARMUP_EPOCHS:g}")
    return advice


def _not_decreasing(ctx: Context) -> Finding:
    symptom = "not_decreasing"
    rule = (f"{TRAIN_LOSS} falls by less than {NOT_DECREASING_MIN_DROP:.0%} first->last, or its "
            f"normalised least-squares slope is > {NOT_DECREASING_MAX_SLOPE:g}/epoch")
    s = ctx.series(TRAIN_LOSS)
    if (skipped := _usable(ctx, s, TRAIN_LOSS, symptom, rule, need=2)) is not None:
        return skipped
    change = relative_change(s.values[0], s.values[-1])
    slope = normalised_slope(s.epochs, s.values)
    measured = {"first": s.values[0], "last": s.values[-1], "relative_change": change, "slope_per_epoch": slope}
    if change > -NOT_DECREASING_MIN_DROP or slope > NOT_DECREASING_MAX_SLOPE:
        lr = ctx.get_number("optim.lr")
        advice = [f"optim.lr={override_number(_raised_lr(lr))}"]
        data_path = ctx.get("data.path")
        if isinstance(data_path, str) and data_path:
            advice.append(f"meshgnn data check {data_path}")
        return Finding(symptom, "problem", measured, rule,
                       f"the training loss is not going down ({change:+.1%} from epoch "
                       f"{int(s.epochs[0])} to {int(s.epochs[-1])}): the learning rate may be too low, "
                       f"or the inputs may not determine the targets (check the data)", advice)
    return Finding(symptom, "ok", measured, rule, f"the training loss fell {-change:.0%}")


def _oscillating(ctx: Context) -> Finding:
    symptom = "oscillating"
    rule = (f"any non-finite {TRAIN_LOSS} (diverged); or median {OSCILLATION} > {OSCILLATION_MAX:g}; or, "
            f"with >= 3 epochs, epoch-to-epoch differences of {TRAIN_LOSS} change sign in >= "
            f"{SIGN_CHANGE_MIN_FRACTION:.0%} of places with upward steps averaging >= {OSCILLATION_MIN_RISE:.0%}")
    s = ctx.series(TRAIN_LOSS)
    if not ctx.records or s.missing == len(ctx.records):
        return _skip(symptom, f"{TRAIN_LOSS} is not in metrics.jsonl", rule)
    lr, clip = ctx.get_number("optim.lr"), ctx.get_number("trainer.grad_clip")
    advice = [f"optim.lr={override_number(lr / 5 if lr is not None else 2e-4)}"]
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
                       f"{epoch_list(s.nonfinite)}; lower the learning rate and clip gradients", advice)
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
        tail = "" if len(advice) > 1 else f" (gradients are already clipped at {override_number(clip)})"
        return Finding(symptom, "problem", measured, rule,
                       f"the training loss oscillates: {'; '.join(reasons)}; the learning rate is "
                       f"probably too high{tail}", advice)
    return Finding(symptom, "ok", measured, rule, "the training loss moves smoothly")




def _target_imbalance(ctx: Context) -> Finding:
    symptom = "target_imbalance"
    rule = (f"at the last epoch, worst val/{{t}}/l1 / median of the other targets' > "
            f"{TARGET_IMBALANCE_MAX_RATIO:g}")
    if not ctx.records:
        return _skip(symptom, "no epochs", rule)
    last = ctx.records[-1]
    targets = sorted(m["target"] for key in last if (m := _TARGET_L1.match(key)) and m["target"] != "loss")
    if len(targets) < 2:
        return _skip(symptom, f"needs at least 2 targets with val/{{t}}/l1, the run has {len(targets)}", rule)
    values = {t: number(last[f"val/{t}/l1"]) for t in targets}
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
        weight = number(weights.get(worst)) if isinstance(weights, dict) else None
        fourier = ctx.get_number("data.fourier_features")
        hidden = ctx.get_number("model.hidden_dim")
        advice = [f"{prefix}loss.target_weights.{worst}={override_number(_raised(weight, 2.0, 2.0), decimal=True)}",
                  f"data.fourier_features={int(max(32, 2 * fourier) if fourier is not None else 32)}",
                  f"model.hidden_dim={int(2 * hidden) if hidden is not None else 512}"]
        return Finding(symptom, "problem", measured, rule,
                       f"{worst} fits {ratio:.1f}x worse than the other targets: give it more weight "
                       f"or the model more capacity (a new run: these change the network)", advice)
    return Finding(symptom, "ok", measured, rule,
                   f"the targets fit comparably (worst, {worst}, is {ratio:.1f}x the others)")


def _overfitting(ctx: Context) -> Finding:
    symptom = "overfitting"
    rule = (f"over the last third of the epochs (>= {OVERFIT_MIN_EPOCHS}): slope of {VAL_LOSS} > 0, "
            f"slope of {TRAIN_LOSS} < 0, and last val >= {OVERFIT_MIN_VAL_RISE:g} x best val")
    val, train = ctx.series(VAL_LOSS), ctx.series(TRAIN_LOSS)
    for s, key in ((val, VAL_LOSS), (train, TRAIN_LOSS)):
        if (skipped := _usable(ctx, s, key, symptom, rule, need=OVERFIT_MIN_EPOCHS)) is not None:
            return skipped
    window = max(OVERFIT_MIN_EPOCHS, math.ceil(len(val.values) / 3))
    val_slope = normalised_slope(val.epochs[-window:], val.values[-window:])
    train_window = max(OVERFIT_MIN_EPOCHS, math.ceil(len(train.values) / 3))
    train_slope = normalised_slope(train.epochs[-train_window:], train.values[-train_window:])
    best = min(val.values)
    rise = val.values[-1] / best if best > 0 else math.inf
    measured = {"window_epochs": window, "val_slope_per_epoch": val_slope, "train_slope_per_epoch": train_slope,
                "last_val": val.values[-1], "best_val": best, "last_over_best": rise}
    if val_slope > 0 and train_slope < 0 and rise >= OVERFIT_MIN_VAL_RISE:
        dropout = ctx.get_number("model.dropout")
        smooth = ctx.get_number("loss.smoothness_weight")
        decay = ctx.get_number("optim.weight_decay")
        advice = [f"model.dropout={override_number(min(0.5, _raised(dropout, 0.15, 2.0)), decimal=True)}",
                  f"loss.smoothness_weight={override_number(_raised(smooth, 0.15, 2.0), decimal=True)}",
                  f"optim.weight_decay={override_number(_raised(decay, 1e-4, 10.0))}"]
        return Finding(symptom, "problem", measured, rule,
                       f"validation loss rose to {rise:.2f}x its best while the training loss kept "
                       f"falling: the model memorises the training meshes; regularise it, and use "
                       f"best.ckpt (epoch of the best val)", advice)
    return Finding(symptom, "ok", measured, rule, "validation loss follows the training loss")


def _under_trained(ctx: Context) -> Finding:
    symptom = "under_trained"
    rule = (f"best {VAL_LOSS} is at the last epoch and it improved by > {UNDER_TRAINED_MIN_IMPROVEMENT:.0%} "
            f"per epoch (normalised slope) over the last third of the epochs (>= {UNDER_TRAINED_MIN_EPOCHS})")
    val = ctx.series(VAL_LOSS)
    if (skipped := _usable(ctx, val, VAL_LOSS, symptom, rule, need=UNDER_TRAINED_MIN_EPOCHS)) is not None:
        return skipped
    window = max(UNDER_TRAINED_MIN_EPOCHS, math.ceil(len(val.values) / 3))
    improvement = -normalised_slope(val.epochs[-window:], val.values[-window:])
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


def _consistency(ctx: Context) -> Finding:
    symptom = "consistency_not_decreasing"
    rule = f"{CONSISTENCY} relative change first->last >= {CONSISTENCY_MAX_CHANGE:+.0%}"
    s = ctx.series(CONSISTENCY)
    if (skipped := _usable(ctx, s, CONSISTENCY, symptom, rule, need=2)) is not None:
        return skipped
    change = relative_change(s.values[0], s.values[-1])
    measured = {"first": s.values[0], "last": s.values[-1], "relative_change": change}
    if change >= CONSISTENCY_MAX_CHANGE:
        weight = ctx.get_number("loss.gradient_consistency_weight")
        advice = [f"loss.gradient_consistency_weight={override_number(_raised(weight, 0.1, 2.0), decimal=True)}"]
        if ctx.get("loss.name") != "stage2":
            # trainer.epochs is the total and init_from continues the epoch counter: it must grow
            advice.append(f"loss=stage2 init_from={ctx.run_dir} trainer.epochs={2 * ctx.last_epoch}")
        return Finding(symptom, "problem", measured, rule,
                       f"the gradient-consistency loss is not going down ({change:+.1%}): derivatives "
                       f"of the fields (fluxes, strains) do not match the physics; weight that term "
                       f"more or continue in stage 2", advice)
    return Finding(symptom, "ok", measured, rule, f"gradient consistency improved {-change:.0%}")





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
