"""The training loop: one readable loop, with checkpoints, early stopping and logging.

The trainer knows nothing about configs or data sources: it gets a model, a loss, loaders and
plain settings, so tests and later tools (sweeps, DDP) can drive it directly.

A step reads nothing back from the device: its logged values are queued (`step_log`) and
read for many steps at once, so a GPU is never left waiting for the host between steps; with
`cuda_graphs` each step is replayed from a captured CUDA graph (`cuda_graphs`, `padding`),
and batches from host memory are copied a step ahead (`prefetch`).

Under DDP (`dist` with several ranks) every rank runs this same loop on its own shard and
takes the same decisions: at each read of the steps' values, their losses and the stop
requests are summed over ranks; epoch sums and validation/test metrics are pooled over
ranks (`evaluation`), and only rank 0 writes (checkpoints, metrics.jsonl, TensorBoard).

What the trainer is told and carries through restarts is in `train_state`, the divergence
checks it runs at every read and epoch in `divergence`.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.optim.lr_scheduler import LambdaLR
from torch_geometric.loader import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from meshgnn.atomic import remove_orphaned_temp_files, writing
from meshgnn.distributed import Dist
from meshgnn.training.checkpoint import save_checkpoint
from meshgnn.training.cuda_graphs import PaddedSteps, logged_row
from meshgnn.training.divergence import check_epoch, check_step
from meshgnn.training.evaluation import accumulate, add_rank_sums, evaluate, test
from meshgnn.training.losses import CompositeLoss
from meshgnn.training.metrics_log import MetricsLog
from meshgnn.training.precision import autocast, grad_scaler
from meshgnn.training.prefetch import prefetched
from meshgnn.training.rng import rng_state, set_rng_state
from meshgnn.training.schedule import Schedule
from meshgnn.training.step_log import PendingSteps, StepRecord
from meshgnn.training.stop import StopRequests
from meshgnn.training.train_state import TrainerSettings, TrainState
from meshgnn.weights import load_weights

log = logging.getLogger(__name__)

# What checkpoints written before the monitor followed `objective` monitored.
LEGACY_MONITOR = {"metric": "val/loss/total", "mode": "min"}


class Trainer:
    def __init__(self, model: nn.Module, loss_fn: CompositeLoss, optimizer: torch.optim.Optimizer,
                 schedule: Schedule | None, loaders: dict[str, DataLoader], settings: TrainerSettings,
                 run_dir: Path, device: torch.device,
                 checkpoint_extras: Callable[[], dict[str, Any]], dist: Dist | None = None) -> None:
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.schedule, self.loaders, self.settings = schedule, loaders, settings
        self.run_dir, self.device = Path(run_dir), device
        self.checkpoint_extras = checkpoint_extras
        self.dist = dist or Dist()
        # Called as hook(epoch, metrics) after each epoch is logged and saved (e.g. pruning,
        # field images, which write through `self.metrics_log`).
        self.epoch_hooks: list[Callable[[int, dict[str, float]], None]] = []
        self.metrics_log: MetricsLog | None = None
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.lr_scheduler: LambdaLR | None = None  # see _step_rate
        self.state = TrainState(best_value=math.inf if settings.monitor_mode == "min" else -math.inf)
        self.scaler = grad_scaler(settings.precision, device)
        # The forward pass used for training and evaluation: the model, or a compiled
        # version of it (`torch.compile`) that shares its parameters. Under DDP training goes
        # through the DDP module and `eval_forward` (None: the same as `forward`) is the
        # module's own, since evaluation shards differ in size.
        self.forward: Callable[[Any], tuple[dict[str, Tensor], dict[str, Tensor]]] = model
        self.eval_forward: Callable[[Any], tuple[dict[str, Tensor], dict[str, Tensor]]] | None = None
        self._pending = PendingSteps()  # steps whose logged values are still on the device
        self._padded: PaddedSteps | None = None  # see _padded_steps

    # ----------------------------------------------------------------- loop
    def fit(self) -> TrainState:
        """Train until `epochs`, early stop, or a stop request (signal or max_time).

        A stop request lets the current step finish, writes `last.ckpt` with the position
        inside the epoch, and returns with `state.stopped_by` set.
        """
        if self.schedule is None:
            raise ValueError("set Trainer.schedule before fit()")
        self.lr_scheduler = None  # LambdaLR, made at this launch's first step and positioned there
        metrics_log = None
        if self.dist.is_main:
            with writing(self.ckpt_dir):
                self.ckpt_dir.mkdir(parents=True, exist_ok=True)
                for orphan in remove_orphaned_temp_files(self.ckpt_dir):
                    log.warning("removed %s, a half-written checkpoint of a killed launch", orphan.name)
            # The caller's (the chosen loggers; it closes them after testing) or, for a trainer
            # driven directly, metrics.jsonl and TensorBoard opened and closed here.
            metrics_log = self.metrics_log or MetricsLog(self.run_dir, first_new_epoch=self.state.epoch + 1)
        opened_here = metrics_log is not None and metrics_log is not self.metrics_log
        self.metrics_log = metrics_log
        self._deadline = (time.monotonic() + self.settings.max_time_s
                          if self.settings.max_time_s > 0 else math.inf)
        try:
            with StopRequests() as stop:
                self._stop = stop
                while self.state.epoch < self.settings.epochs:
                    start = time.perf_counter() - self.state.epoch_seconds
                    if not self._train_epoch():
                        self.state.epoch_seconds = time.perf_counter() - start
                        self._save(self.checkpoint_payload({}), [self.ckpt_dir / "last.ckpt"])
                        log.warning("stopped by %s at epoch %d, batch %d; last.ckpt saved",
                                    self.state.stopped_by, self.state.epoch + 1, self.state.batches_done)
                        break
                    if self._end_epoch(metrics_log, time.perf_counter() - start):
                        break
        except BaseException as exc:
            if opened_here:
                metrics_log.close_after(exc)
                self.metrics_log = None
            raise
        if opened_here:
            metrics_log.close()
            self.metrics_log = None
        self.dist.barrier()  # rank 0's last checkpoint is on disk before any rank goes on
        return self.state

    def _end_epoch(self, metrics_log: MetricsLog | None, train_time: float) -> bool:
        """Validate, log, checkpoint; True when early stopping ends the run."""
        sums, graphs = self._pooled_sums(self.state.epoch_sums, self.state.epoch_graphs)
        train_metrics = {f"train/{k}": v / graphs for k, v in sums.items()}
        train_metrics["train/loss/oscillation"] = oscillation(self.state.step_losses)
        train_metrics["train/param_norm"] = float(nn.utils.get_total_norm(
            [p.detach() for p in self.model.parameters()]))
        val_metrics = self.evaluate(self.loaders["val"], "val")
        self.state.epoch += 1
        self.state.batches_done, self.state.epoch_sums, self.state.epoch_graphs = 0, {}, 0
        self.state.epoch_seconds, self.state.step_losses = 0.0, []
        metrics = {**train_metrics, **val_metrics,
                   "consistency/grad": val_metrics["val/loss/gradient_consistency"],
                   "lr": self.optimizer.param_groups[0]["lr"], "epoch_time_s": train_time}
        check_epoch(metrics, self.state.epoch, self.settings.divergence_factor,
                    self.state.divergence_reference)  # before anything of this epoch is written
        self.state.history.append(metrics)
        improved = self._update_early_stopping(metrics[self.settings.monitor])
        # Metrics first, then checkpoints: a kill in between re-runs this epoch on resume,
        # and resuming truncates metrics.jsonl and TensorBoard back to the checkpoint.
        if metrics_log is not None:
            metrics_log.write(self.state.epoch, metrics)
        self._save_checkpoints(metrics, improved)
        monitor = self.settings.monitor
        shown = "" if monitor == "val/loss/total" else f"  {monitor} {metrics[monitor]:.4g}"
        log.info("epoch %d/%d  train %.4g  val %.4g%s%s  (%.1fs)", self.state.epoch,
                 self.settings.epochs, metrics["train/loss/total"], metrics["val/loss/total"], shown,
                 "  *best*" if improved else "", train_time)
        for hook in self.epoch_hooks:
            hook(self.state.epoch, metrics)
        if self._should_stop_early():
            log.info("early stop: %s has not improved for %d epochs (best %.4g at epoch %d)",
                     self.settings.monitor, self.state.bad_epochs, self.state.best_value, self.state.best_epoch)
            return True
        return False

    def _train_epoch(self) -> bool:
        """Train the rest of the current epoch; False if a stop was requested part-way.

        On a terminal a progress bar shows loss, graphs/s and the epoch's ETA (log records
        are routed around it); elsewhere the same figures come as a log line every
        `log_every_steps` steps, so train.log and cluster logs hold no control characters.
        A resumed epoch counts from the batches it had done (the loader yields only the rest)."""
        self.model.train()
        loader = self.loaders["train"]
        loader.batch_sampler.set_epoch(self.state.epoch, skip_batches=self.state.batches_done)
        bar = tqdm(total=loader.batch_sampler.batches_per_epoch(), initial=self.state.batches_done,
                   unit="batch", file=sys.stderr,
                   desc=f"epoch {self.state.epoch + 1}/{self.settings.epochs}",
                   disable=None if self.dist.is_main else True,
                   leave=False, dynamic_ncols=True)
        with bar, logging_redirect_tqdm():
            return self._train_batches(loader, bar)

    def _train_batches(self, loader: DataLoader, bar: tqdm) -> bool:
        """The steps: queued without waiting for the device, their logged values read every
        `log_every_steps` steps, at the epoch's end and before a stop saves (`_read_steps`)."""
        started, start_step, start_graphs = time.perf_counter(), self.state.batches_done, self.state.epoch_graphs
        steps = self._padded_steps()
        for batch in prefetched(loader, self.device, steps.pad if steps else lambda batch: batch):
            lr = self._step_rate()
            graphs = batch.get("real_graphs") or batch.num_graphs
            keys, row = logged_row(self.train_step(batch)) if steps is None else steps(batch)
            self.state.global_step += 1
            self.state.batches_done += 1
            self.state.epoch_graphs += graphs
            self._pending.add(keys, row, StepRecord(self.state.global_step, self.state.epoch + 1, graphs))
            bar.update()
            request = self._stop_request()  # under DDP acted on at the next read, by every rank
            if (request and not self.dist.enabled) or self.state.global_step % self.settings.log_every_steps == 0:
                if self._report(request, bar, lr, started, start_step, start_graphs):
                    return False
        return not (self._pending and self._report(self._stop_request(), bar, lr, started, start_step,
                                                   start_graphs))

    def _report(self, request: str | None, bar: tqdm, lr: float, started: float, start_step: int,
                start_graphs: int) -> bool:
        """Read the pending steps, show the progress; True when the launch stops here."""
        self.state.stopped_by = self._read_steps(request)
        rate = (self.state.epoch_graphs - start_graphs) / max(time.perf_counter() - started, 1e-9)
        bar.set_postfix(loss=f"{self.state.step_losses[-1]:.4g}", graphs_s=f"{rate:.1f}", refresh=False)
        if bar.disable and self.state.global_step % self.settings.log_every_steps == 0:
            left = (bar.total - self.state.batches_done) * (time.perf_counter() - started) / max(
                self.state.batches_done - start_step, 1)
            log.info("step %d  loss %.4g  lr %.3g  %.1f graphs/s  epoch %d/%d ETA %s",
                     self.state.global_step, self.state.step_losses[-1], lr, rate, self.state.epoch + 1,
                     self.settings.epochs, _clock(left))
        return self.state.stopped_by is not None

    def train_step(self, batch) -> dict[str, Tensor]:
        """One optimiser step on a batch on the device: forward, loss, backward, clipping,
        update. Nothing in it reads a value back from the device, so on a GPU it is queued
        while earlier steps run, and it can be captured as a CUDA graph (`cuda_graphs`)."""
        loss, logged = self.loss_fn(self._predict(batch), batch)
        # zeroed, not freed: the gradients stay the same tensors step after step, which every
        # captured graph then reads and writes (0 + g is g: the same update as set_to_none)
        self.optimizer.zero_grad(set_to_none=False)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # clip and log true gradients (fp16 scales them)
        logged["grad_norm"] = self._clip_gradients()
        self.scaler.step(self.optimizer)  # fp16: skipped while the scale still overflows (a host sync)
        self.scaler.update()
        return logged

    def _padded_steps(self) -> PaddedSteps | None:
        """With `cuda_graphs`, the padded steps (made once: their captured graphs are kept)."""
        if not self.settings.cuda_graphs:
            return None
        if self._padded is None:
            capture = self.device.type == "cuda" and not self.dist.enabled
            if not capture:
                log.warning("trainer.cuda_graphs=true %s: batches are padded to size buckets but run "
                            "eagerly (same results, no speed-up)", "under DDP (its gradient all-reduce "
                            "is not captured)" if self.dist.enabled else "without a CUDA device")
            self._padded = PaddedSteps(self.train_step, self.model, self.optimizer,
                                       self.settings.bucket_growth, self.device, capture)
        return self._padded

    def _read_steps(self, request: str | None) -> str | None:
        """Read the pending steps' values (one transfer), check each step for divergence, add
        them to the epoch's sums; return the stop request every rank acts on.

        A step whose loss is not finite or rose `divergence_factor` times ends the run here,
        up to `log_every_steps` steps after it: nothing was saved in between, so the last
        good checkpoints are still what remains."""
        steps = self._pending.read()
        losses, stop = self._agree([step.values["loss/total"] for step in steps], request)
        for step, loss in zip(steps, losses):
            reference = loss if self.state.divergence_reference is None else self.state.divergence_reference
            check_step(loss, step.record.epoch, step.record.step, self.settings.divergence_factor, reference)
            self.state.divergence_reference = reference  # the lineage's first step's, once set
            accumulate(self.state.epoch_sums, step.values, step.record.graphs)
            self.state.step_losses.append(loss)
        return stop

    def _step_rate(self) -> float:
        """Set the learning rate of the step about to be taken (schedule step = global step minus
        the schedule's origin) through LambdaLR, and return it. The optimiser's groups keep the
        rate of the last step taken, which checkpoints record.

        Under fp16 the scaler skips an overflowing step's update by design; the rate still
        follows the step count, so LambdaLR's warning about a scheduler step without an
        optimiser step is not a mistake here."""
        if self.lr_scheduler is None:
            step = self.state.global_step - self.state.schedule_origin_step
            self.lr_scheduler = self.schedule.lr_scheduler(self.optimizer, step)
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                self.lr_scheduler.step()
        return self.optimizer.param_groups[0]["lr"]

    def _stop_request(self) -> str | None:
        """This process's stop request: a signal, or the launch's time budget spent."""
        return self._stop.requested or ("max_time" if time.monotonic() > self._deadline else None)

    STOP_REASONS = ("SIGTERM", "SIGINT", "max_time")

    def _agree(self, losses: list[float], request: str | None) -> tuple[list[float], str | None]:
        """(the steps' losses, the stop request) that every rank acts on.

        In one process: these losses and this process's request. Under DDP, one all-reduce at
        each read (every rank reads after the same steps): the mean of the ranks' losses of
        each step (the loss of the global batch, since shards are equal: NaN on any rank stops
        every rank), and whether any rank has a stop request, so all ranks stop after the same
        step and none is left waiting in a collective."""
        if not self.dist.enabled:
            return losses, request
        flags = [float(request == reason) for reason in self.STOP_REASONS]
        totals = self.dist.sum([*losses, *flags])
        counts = totals[len(losses):]
        stop = next((reason for reason, n in zip(self.STOP_REASONS, counts) if n > 0), None)
        return [total / self.dist.world_size for total in totals[:len(losses)]], stop

    def _predict(self, batch, training: bool = True) -> dict[str, Tensor]:
        """Predictions in float32 whatever the forward pass's precision (the loss and the
        metrics are computed in float32)."""
        forward = self.forward if training or self.eval_forward is None else self.eval_forward
        with autocast(self.settings.precision, self.device):
            pred, _ = forward(batch)
        return {name: value.float() for name, value in pred.items()}

    def _pooled_sums(self, sums: dict[str, float], graphs: int) -> tuple[dict[str, float], int]:
        """Per-graph sums and graph count over all ranks (identity in one process)."""
        if not self.dist.enabled:
            return sums, graphs
        return add_rank_sums(self.dist.all_gather_object((sums, graphs)))

    def _clip_gradients(self) -> Tensor:
        """The global gradient norm before clipping (logged as train/grad_norm), clipping to
        `grad_clip` when it is set."""
        if self.settings.grad_clip > 0:
            return nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
        return nn.utils.get_total_norm([p.grad for p in self.model.parameters() if p.grad is not None])

    def evaluate(self, loader: DataLoader, prefix: str) -> dict[str, float]:
        """Loss components and physical rel L2 per target, averaged over graphs."""
        self.model.eval()
        return evaluate(loader, prefix, self._eval_predict, self.loss_fn, self.device, self.dist)

    def test(self, loader: DataLoader) -> dict[str, dict[str, float]]:
        """Per-target errors in physical units of the model and of the two baselines."""
        self.model.eval()
        return test(loader, self._eval_predict, self.loss_fn, self.device, self.dist, self.state.best_epoch)

    def _eval_predict(self, batch) -> dict[str, Tensor]:
        return self._predict(batch, training=False)

    # -------------------------------------------------- early stop, checkpoints
    def _update_early_stopping(self, value: float) -> bool:
        """Whether `value` of the monitored metric is a new best (strictly, in its direction)."""
        best = self.state.best_value
        if value < best if self.settings.monitor_mode == "min" else value > best:
            self.state.best_value, self.state.best_epoch, self.state.bad_epochs = value, self.state.epoch, 0
            return True
        self.state.bad_epochs += 1
        return False

    def _should_stop_early(self) -> bool:
        patience = self.settings.early_stop_patience
        return patience > 0 and self.state.bad_epochs >= patience

    def _save_checkpoints(self, metrics: dict[str, float], improved: bool) -> None:
        paths = [self.ckpt_dir / "last.ckpt"]
        if improved:
            paths.append(self.ckpt_dir / "best.ckpt")
        if self.state.epoch % self.settings.save_every == 0:
            paths.append(self.ckpt_dir / f"epoch_{self.state.epoch:04d}.ckpt")
        self._save(self.checkpoint_payload(metrics), paths)

    def _save(self, payload: dict[str, Any], paths: list[Path]) -> None:
        """Rank 0 writes; every rank has built the payload (which pools over ranks)."""
        if self.dist.is_main:
            save_checkpoint(payload, *paths)

    def checkpoint_payload(self, metrics: dict[str, float]) -> dict[str, Any]:
        """Everything a resume needs. Under DDP a collective (every rank calls it at the same
        point): the interrupted epoch's sums are pooled over ranks, and every rank's RNG state
        is kept (`rng` stays rank 0's, so any world size can resume)."""
        progress, rng = self.state.progress_dict(), rng_state()
        per_rank: dict[str, Any] = {}
        if self.dist.enabled:
            parts = self.dist.all_gather_object((progress["sums"], progress["graphs"], rng))
            progress["sums"], progress["graphs"] = add_rank_sums([part[:2] for part in parts])
            per_rank["rng_per_rank"] = [part[2] for part in parts]
        return {
            "epoch": self.state.epoch,
            "global_step": self.state.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {**self.schedule.state_dict(), "step": self.state.global_step},
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": rng,
            "early_stopping": self.state.as_dict(),
            "monitor": {"metric": self.settings.monitor, "mode": self.settings.monitor_mode,
                        "best": self.state.best_value},
            "schedule_origin": [self.state.schedule_origin_epoch, self.state.schedule_origin_step],
            "epoch_progress": progress,
            "metrics": metrics,
            "divergence_reference": self.state.divergence_reference,
            **per_rank,
            **self.checkpoint_extras(),
        }

    def restore(self, payload: dict[str, Any], optimizer_too: bool = True) -> None:
        """Continue from a checkpoint: weights always; optimiser, counters and RNG on resume."""
        load_weights(self.model, payload["model"], "the resume= checkpoint", "resume it with the "
                     "meshgnn version and model.* settings of the run that wrote it")
        if not optimizer_too:
            return
        self.optimizer.load_state_dict(payload["optimizer"])
        self.state.epoch, self.state.global_step = payload["epoch"], payload["global_step"]
        self._restore_monitor(payload)
        self.state.schedule_origin_epoch, self.state.schedule_origin_step = payload["schedule_origin"]
        progress = payload["epoch_progress"]
        self.state.batches_done, self.state.epoch_graphs = progress["batches_done"], progress["graphs"]
        self.state.epoch_sums = dict(progress["sums"])
        self.state.epoch_seconds = float(progress["seconds"])
        self.state.step_losses = list(progress.get("step_losses", []))
        self.state.divergence_reference = payload.get("divergence_reference")
        if payload.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(payload["scaler"])
        if self.dist.rank > 0:  # the saved sums are pooled over ranks: rank 0 carries them on
            self.state.epoch_sums, self.state.epoch_graphs = {}, 0
        rngs = payload.get("rng_per_rank")
        same_world = rngs is not None and len(rngs) == self.dist.world_size
        set_rng_state(rngs[self.dist.rank] if same_world else payload["rng"])


    def _restore_monitor(self, payload: dict[str, Any]) -> None:
        """Carry the best value and patience on when the checkpoint monitored the same metric in
        the same direction; otherwise (a resume that changes `objective`) start them afresh, so
        best.ckpt is the best epoch by the new objective from here on."""
        saved = payload.get("monitor", LEGACY_MONITOR)
        now = {"metric": self.settings.monitor, "mode": self.settings.monitor_mode}
        if {"metric": saved["metric"], "mode": saved["mode"]} == now:
            stop = payload["early_stopping"]
            self.state.best_value, self.state.best_epoch = stop["best_value"], stop["best_epoch"]
            self.state.bad_epochs = stop["bad_epochs"]
            return
        log.warning("the checkpoint's best.ckpt followed %s (%s); this run follows %s (%s): best.ckpt "
                    "and early stopping restart from the next epoch", saved["metric"], saved["mode"],
                    now["metric"], now["mode"])


def oscillation(losses: list[float]) -> float:
    """How much the step losses of an epoch jump around their trend: the standard deviation
    of their residuals from a least-squares line, over their mean (0 with < 3 steps)."""
    if len(losses) < 3:
        return 0.0
    y = torch.tensor(losses, dtype=torch.float64)
    x = torch.arange(len(y), dtype=torch.float64)
    x = x - x.mean()
    slope = (x * (y - y.mean())).sum() / (x * x).sum()
    residual = y - y.mean() - slope * x
    return float(residual.std() / y.mean().abs().clamp_min(1e-12))


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
