"""Training-throughput benchmark: how fast one optimiser step runs, against the memory-bandwidth
floor of the device.

For each model config (default `multiscale_gnn`, and `meshgraphnet`: the classic MeshGraphNets
size, 128 wide, 15 message-passing blocks, one level), each batch size (about 10k, 100k and 1M
mesh nodes) and each cell PRECISION:MODE (`--cells`; precision fp32, bf16 or fp16; mode eager,
compile = `torch.compile` of the tensor forward with dynamic shapes as `trainer.compile=true`,
graphs = the batch padded to its size bucket and the step replayed from a CUDA graph as
`trainer.cuda_graphs=true`, or compile+graphs), it times the trainer's own step
(`Trainer.train_step`) on one fixed batch already on the device:

    forward under `meshgnn.training.precision.autocast` -> predictions cast to float32 ->
    CompositeLoss (the configured loss, float32) -> zero_grad -> (fp16: scaled) backward ->
    unscale -> gradient-norm clipping (trainer.grad_clip) -> AdamW step (foreach, as train.py;
    capturable under graphs) -> scaler update -> the logged values stacked into one row

and, as the trainer does, reads the logged rows back once (after the timed steps; the trainer
every `trainer.log_every_steps` steps): no step waits for the device. With graphs, padding the
batch and copying it into the graph's inputs are timed too. Host-to-device copies of batches
are not timed: the batch is moved once. fp32 is true float32 (TF32 off, torch's default, as in
the trainer).

Batches are built like the training data: a few heat2d samples of about 10k nodes each
(mesh size 0.0118 * sqrt(19000 / 10000)), turned into graphs by the training pipeline
(`sample_to_graph`, `add_features` with the model's coarse levels, a `Normalizer` fit on these
samples, `normalize`), then k of them (cycling through the samples) batched with
`Batch.from_data_list` to reach the requested node count.

It prints, per (model, nodes, precision, mode): step time, mesh nodes/s and graphs/s, peak
GPU memory (`torch.cuda.max_memory_allocated`, reset per cell; "-" on CPU), the bandwidth floor
time, the fraction of the floor reached (floor time / step time: 1.0 = at the floor) and the
speed-up over eager fp32 of the same model and batch. A cell that runs out of GPU memory prints
"OOM" (larger batches of the same setting are then skipped).

Targets (issue #20): the fastest bf16 cell with compile and/or graphs at least 5x eager fp32
and 15 % of the bandwidth floor at ~10k nodes, 3x and 40 % at ~100k, 3x and 64 % at ~1M; a
summary table at the end checks them.

The floor (see `StepTraffic`) is the number of bytes one training step must move through device
memory, divided by the measured bandwidth (the better of a large device-to-device copy and an
in-place `x.add_(1)`, bytes read + written / time). Counted, exactly from the batch's node and
edge counts at every level (mesh and each coarse level of the multi-scale model):
  - every Linear layer of every MLP applied to R rows: read the input [R, in] and write the
    output [R, out]; the processor's first edge layer in its split form (W_e on the edges,
    W_src and W_dst on the nodes), as the model computes it;
  - every SiLU and LayerNorm: read and write [R, width];
  - gathers (h_src and h_dst rows per edge of every block; the cluster latent per fine node
    when unpooling): read and write [R, hidden], plus the int64 index;
  - scatters (the aggregation over each block's edges; the mean-pool into each coarse level):
    read [R, hidden] and the int64 index, write [nodes out, hidden];
  all activations in the precision's bytes (4 for fp32, 2 for bf16/fp16: the floor of an ideal
  16-bit pipeline; autocast itself keeps LayerNorm, scatters and the edge layer's gathered node
  parts in float32 (see `ProcessorBlock`), so this
  implementation's own minimum is higher);
  - backward = 2x the forward's traffic (read the saved activations and the output gradient,
    write the input gradient), so activations count 3x the forward;
  - parameters, float32, P of them: forward weight read (4P), backward weight read and gradient
    write (8P), gradient norm and clipping (read, then read + write: 12P), AdamW (read param,
    grad and both moments, write param and moments: 28P) = 52P bytes.
Not counted (taken as fused into a neighbouring op, or negligible): bias and residual adds, the
three-part sum of the split edge layer, concatenations, dtype casts of weights and predictions,
the loss (per node and edge at the targets' width of 3), the index reads of the loss.

Usage (on the GPU machine; a CPU smoke run: --device cpu --nodes 10000 --cells fp32:eager fp32:graphs):
    python benchmarks/throughput.py [--device cuda] [--nodes 10000 100000 1000000]
        [--cells fp32:eager bf16:compile+graphs ...] [--models multiscale_gnn meshgraphnet]
        [--steps 20] [--warmup 3] [--samples 4] [extra config overrides, e.g. model.hidden_dim=96,
        or trainer.activation_checkpointing=true for batches that do not fit otherwise]
"""

from __future__ import annotations

import argparse
import gc
import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch._dynamo  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from torch_geometric.data import Batch, InMemoryDataset  # noqa: E402

from meshgnn.config import register_configs  # noqa: E402
from meshgnn.data.features import (FeatureSpec, GraphDataset, add_features, feature_spec, normalize,  # noqa: E402
                                   single_graph_store)
from meshgnn.data.graph import sample_to_graph  # noqa: E402
from meshgnn.data.hierarchy import MultiScaleData  # noqa: E402
from meshgnn.data.normalizer import Normalizer  # noqa: E402
from meshgnn.data.sources import get_source  # noqa: E402
from meshgnn.data.features import ModelInputs  # noqa: E402
from meshgnn.models.build import build_model, compiled_forward  # noqa: E402
from meshgnn.training.cuda_graphs import PaddedSteps, stack_logged  # noqa: E402
from meshgnn.training.losses import TERMS, CompositeLoss  # noqa: E402
from meshgnn.training.trainer import Trainer, TrainerSettings  # noqa: E402
from table import machine_line  # noqa: E402

REFERENCE_NODES, REFERENCE_MESH_SIZE = 19_000, 0.0118  # heat2d: nodes ~ 1 / mesh_size^2
SAMPLE_NODES = 10_000
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
MODES = ("eager", "compile", "graphs", "compile+graphs")
DEFAULT_CELLS = ("fp32:eager", "fp32:graphs", "bf16:eager", "bf16:compile", "bf16:graphs", "bf16:compile+graphs")
# (speed-up over eager fp32, fraction of the bandwidth floor) the best bf16 cell with compile
# or graphs must reach, by batch size (issue #20); a size in between takes the nearest one's.
TARGETS = {10_000: (5.0, 0.15), 100_000: (3.0, 0.40), 1_000_000: (3.0, 0.64)}
MAX_EXTRA_COMPILE_WARMUP = 20  # warm-up steps beyond --warmup while a compiled step still compiles


# ------------------------------------------------------------------------------------ data
def compose_config(model: str, overrides: list[str]) -> DictConfig:
    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=["data=heat2d", f"model={model}", *overrides])


def generate_samples(cfg: DictConfig, count: int, nodes: int = SAMPLE_NODES) -> list:
    """`count` heat2d samples of about `nodes` nodes each (different plates and holes)."""
    mesh_size = REFERENCE_MESH_SIZE * (REFERENCE_NODES / nodes) ** 0.5
    source = get_source("heat2d")
    return [source.generate(i, cfg.data.seed, mesh_size, cfg.data.max_holes) for i in range(count)]


@dataclass
class Prepared:
    """The samples as one model config's training data sees them."""

    dataset: GraphDataset
    features: FeatureSpec
    normalizer: Normalizer


def prepare(cfg: DictConfig, samples: list) -> Prepared:
    """Features, coarse levels and normalisation exactly as `load_datasets` builds them (the
    normaliser fit on these samples)."""
    source = get_source("heat2d")
    features = feature_spec(cfg.data, source.spec, ModelInputs.of_model(cfg.model))
    graphs = [sample_to_graph(s, source.spec) for s in samples]
    if len(graphs) == 1:  # collate returns no slices for one graph
        store, slices = single_graph_store(graphs[0])
    else:
        store, slices = InMemoryDataset.collate(graphs)
        store = MultiScaleData.from_dict(store.to_dict())
    add_features(store, slices, features)
    normalizer = Normalizer.fit({"x": store.x, "edge_attr": store.edge_attr, "y": store.y},
                                std_floor=cfg.data.std_floor)
    normalize(store, slices, normalizer, features.residual)
    return Prepared(GraphDataset(store, slices), features, normalizer)


def make_batch(prepared: Prepared, nodes: int) -> Batch:
    """About `nodes` mesh nodes: k graphs, cycling through the samples."""
    dataset = prepared.dataset
    per_graph = sum(int(dataset[i].num_nodes) for i in range(len(dataset))) / len(dataset)
    k = max(1, round(nodes / per_graph))
    return Batch.from_data_list([dataset[i % len(dataset)] for i in range(k)])


def level_counts(batch: Batch, num_levels: int) -> list[tuple[int, int]]:
    """(nodes, edges) of the mesh and of each coarse level, from the batch's shapes."""
    counts = [(int(batch.x.shape[0]), int(batch.edge_index.shape[1]))]
    for level in range(1, num_levels + 1):
        counts.append((int(batch[f"nodes_{level}"].shape[0]), int(batch[f"edge_index_{level}"].shape[1])))
    return counts


# ----------------------------------------------------------------------------------- floor
class StepTraffic:
    """Bytes one training step moves at minimum (see the module docstring for what counts).

    Mirrors `EdgeGNN.forward_tensors` and `ProcessorBlock.forward` op by op; activation
    traffic is tallied in elements (times the precision's bytes later), index reads in bytes.
    """

    def __init__(self, model_cfg: DictConfig, node_dim: int, edge_dim: int, target_dims: list[int],
                 counts: list[tuple[int, int]]) -> None:
        self.hidden, self.mlp_layers = int(model_cfg.hidden_dim), int(model_cfg.mlp_layers)
        self.elements = 0  # activation elements read + written by the forward pass
        self.index_bytes = 0  # int64 gather/scatter indices read by the forward pass
        H, levels, blocks = self.hidden, int(model_cfg.num_levels), int(model_cfg.num_layers)
        spatial_dim = edge_dim - 1
        (n0, e0) = counts[0]
        self.mlp(n0, node_dim, H)  # node encoder
        self.mlp(e0, edge_dim, H)  # edge encoder
        for _ in range(blocks):  # processor, at the mesh
            self.block(n0, e0)
        for level in range(1, levels + 1):  # down: pool, encode the level's edges, blocks
            (fine_n, _), (n, e) = counts[level - 1], counts[level]
            self.scatter(fine_n, n, H)
            self.mlp(e, edge_dim, H)
            for _ in range(blocks):
                self.block(n, e)
        for level in range(levels, 0, -1):  # up: unpool into the finer level, blocks there
            fine_n, fine_e = counts[level - 1]
            self.gather(fine_n, H)
            self.mlp(fine_n, 2 * H + spatial_dim, H)
            for _ in range(blocks):
                self.block(fine_n, fine_e)
        for dim in target_dims:  # decoders
            self.mlp(n0, H, dim, layer_norm=False)

    def linear(self, rows: int, d_in: int, d_out: int) -> None:
        self.elements += rows * (d_in + d_out)

    def pointwise(self, rows: int, width: int) -> None:  # SiLU, LayerNorm: read + write
        self.elements += 2 * rows * width

    def gather(self, rows: int, width: int) -> None:
        self.elements += 2 * rows * width
        self.index_bytes += 8 * rows

    def scatter(self, rows: int, rows_out: int, width: int) -> None:
        self.elements += (rows + rows_out) * width
        self.index_bytes += 8 * rows

    def mlp(self, rows: int, d_in: int, d_out: int, layer_norm: bool = True) -> None:
        """`meshgnn.models.edge_gnn.mlp`: Linear (SiLU Linear)* [LayerNorm]."""
        dims = [d_in] + [self.hidden] * (self.mlp_layers - 1) + [d_out]
        for i in range(self.mlp_layers):
            if i > 0:
                self.pointwise(rows, dims[i])
            self.linear(rows, dims[i], dims[i + 1])
        if layer_norm:
            self.pointwise(rows, d_out)

    def block(self, n: int, e: int) -> None:
        """ProcessorBlock on n nodes and e edges."""
        H = self.hidden
        self.linear(e, H, H)  # W_e e
        self.linear(n, H, H)  # W_src h
        self.linear(n, H, H)  # W_dst h
        self.gather(e, H)  # (W_src h)[src]
        self.gather(e, H)  # (W_dst h)[dst]
        for _ in range(1, self.mlp_layers):  # the rest of the edge MLP
            self.pointwise(e, H)
            self.linear(e, H, H)
        self.pointwise(e, H)  # LayerNorm
        self.scatter(e, n, H)  # aggregation
        self.mlp(n, 2 * H, H)  # node MLP on [h, aggregated]

    def bytes(self, precision: str, parameters: int) -> float:
        forward = self.elements * BYTES[precision] + self.index_bytes
        return 3 * forward + 52 * parameters


def measure_bandwidth(device: torch.device) -> tuple[float, float]:
    """Bytes/s (read + written) of a large device-to-device copy and of an in-place add,
    each the best of 10."""
    numel = (1 << 30 if device.type == "cuda" else 1 << 26) // 4  # 1 GiB on GPU, 64 MiB on CPU
    src = torch.ones(numel, device=device)
    dst = torch.empty_like(src)
    rates = []
    for op in (lambda: dst.copy_(src), lambda: src.add_(1)):
        for _ in range(3):
            op()
        best = float("inf")
        for _ in range(10):
            sync(device)
            start = time.perf_counter()
            op()
            sync(device)
            best = min(best, time.perf_counter() - start)
        rates.append(2 * numel * 4 / best)
    del src, dst
    release(device)
    return rates[0], rates[1]


# ------------------------------------------------------------------------------------ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def compiled_graphs() -> int:
    """Graphs dynamo has compiled so far in this process (a recompile adds one)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@dataclass
class Cell:
    step_s: float = float("nan")
    peak_bytes: int | None = None
    warmup_s: float = 0.0
    warmup_steps: int = 0
    graphs: int = 0  # graphs compiled during warm-up
    recompiles: int = 0  # graphs compiled while timing (should be 0)
    error: str = ""


def run_cell(cfg: DictConfig, prepared: Prepared, batch: Batch, precision: str, mode: str,
             device: torch.device, steps: int, warmup: int) -> Cell:
    """Warm up, then time `steps` training steps of a fresh model on `batch` (on `device`):
    the trainer's own step (`Trainer.train_step`), eager, compiled (`trainer.compile`) and/or
    padded and replayed from CUDA graphs (`trainer.cuda_graphs`: the padding is timed too)."""
    source = prepared.features.source
    targets = [(f.name, f.dim) for f in source.targets]
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, int(batch.x.shape[1]), int(batch.edge_attr.shape[1]), targets,
                        residual=prepared.features.residual).to(device)
    model.checkpoint_blocks = bool(cfg.trainer.activation_checkpointing)  # as the trainer sets it
    model.train()
    loss_fn = CompositeLoss(targets, {t: cfg.loss[f"{t}_weight"] for t in TERMS},
                            dict(cfg.loss.target_weights), prepared.normalizer.mean["y"],
                            prepared.normalizer.std["y"], cfg.loss.eps).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                  weight_decay=cfg.optim.weight_decay, foreach=True)
    settings = TrainerSettings(epochs=1, grad_clip=float(cfg.trainer.grad_clip), save_every=1,
                               early_stop_patience=0, log_every_steps=steps, precision=precision)
    trainer = Trainer(model, loss_fn, optimizer, None, {}, settings, Path("."), device, dict)
    if "compile" in mode:
        trainer.forward = compiled_forward(model)
    graphed = PaddedSteps(trainer.train_step, model, optimizer, cfg.trainer.bucket_growth, device,
                          capture=device.type == "cuda") if "graphs" in mode else None
    rows: list[torch.Tensor] = []

    def step() -> None:
        """One step as the trainer takes it; its logged row is kept, read after the timing."""
        if graphed is None:
            rows.append(stack_logged(trainer.train_step(batch)))
        else:
            rows.append(graphed(graphed.pad(batch))[1])

    cell = Cell()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    start, before = time.perf_counter(), compiled_graphs()
    compiled = "compile" in mode
    minimum = max(warmup, 2) if compiled else warmup
    while cell.warmup_steps < minimum + (MAX_EXTRA_COMPILE_WARMUP if compiled else 0):
        graphs = compiled_graphs()
        step()
        cell.warmup_steps += 1
        # compiled: stop at the first step past the minimum that compiled nothing new
        if cell.warmup_steps >= minimum and compiled_graphs() == graphs:
            break
    sync(device)
    cell.warmup_s, cell.graphs = time.perf_counter() - start, compiled_graphs() - before

    before = compiled_graphs()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    losses = torch.stack(rows)[:, 0].tolist()  # the one read of the logged values, as the trainer's
    cell.step_s = (time.perf_counter() - start) / steps
    cell.recompiles = compiled_graphs() - before
    if not all(map(math.isfinite, losses)):
        raise FloatingPointError(f"training loss became {losses}")
    if device.type == "cuda":
        cell.peak_bytes = torch.cuda.max_memory_allocated(device)
    return cell


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def safe_cell(cfg: DictConfig, prepared: Prepared, batch: Batch, precision: str, mode: str,
              device: torch.device, steps: int, warmup: int) -> Cell:
    """`run_cell`, with an out-of-memory (or any other failure) reported in the cell."""
    try:
        return run_cell(cfg, prepared, batch, precision, mode, device, steps, warmup)
    except Exception as exc:  # noqa: BLE001 - one failed cell must not end the whole table
        if is_oom(exc):
            error = "OOM"
        else:
            traceback.print_exc()
            error = f"failed: {type(exc).__name__}"
    finally:  # after the except block, which drops the traceback holding the cell's tensors
        release(device)
    return Cell(error=error)


# ----------------------------------------------------------------------------------- report
def fmt_rate(value: float) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k" if value >= 1e3 else f"{value:.2f}"


@dataclass
class Workload:
    model: str
    cfg: DictConfig
    prepared: Prepared
    batch: Batch
    counts: list[tuple[int, int]]
    traffic: StepTraffic
    parameters: int

    @property
    def nodes(self) -> int:
        return self.counts[0][0]


def workloads(args: argparse.Namespace) -> list[Workload]:
    """Every (model, batch) on the host, with its exact counts and floor traffic."""
    samples = generate_samples(compose_config(args.models[0], args.overrides), args.samples, args.sample_nodes)
    out = []
    for model_name in args.models:
        cfg = compose_config(model_name, args.overrides)
        prepared = prepare(cfg, samples)
        targets = [(f.name, f.dim) for f in prepared.features.source.targets]
        first = prepared.dataset[0]
        node_dim, edge_dim = int(first.x.shape[1]), int(first.edge_attr.shape[1])
        parameters = sum(p.numel() for p in build_model(cfg.model, node_dim, edge_dim, targets,
                                                         residual=prepared.features.residual).parameters())
        for nodes in sorted(args.nodes):
            batch = make_batch(prepared, nodes)
            counts = level_counts(batch, int(cfg.model.num_levels))
            traffic = StepTraffic(cfg.model, node_dim, edge_dim, [d for _, d in targets], counts)
            out.append(Workload(model_name, cfg, prepared, batch, counts, traffic, parameters))
    return out


def print_workloads(loads: list[Workload]) -> None:
    print("| model | mesh nodes | graphs | mesh edges | coarse levels: nodes / edges | parameters | "
          "floor traffic fp32 (GB) | floor traffic bf16/fp16 (GB) |")
    print("|---|---|---|---|---|---|---|---|")
    for w in loads:
        coarse = ", ".join(f"{n:,} / {e:,}" for n, e in w.counts[1:]) or "-"
        print(f"| {w.model} | {w.nodes:,} | {w.batch.num_graphs} | {w.counts[0][1]:,} | {coarse} | "
              f"{w.parameters:,} | {w.traffic.bytes('fp32', w.parameters) / 1e9:.2f} | "
              f"{w.traffic.bytes('bf16', w.parameters) / 1e9:.2f} |")


def parse_cell(text: str) -> tuple[str, str]:
    precision, _, mode = text.partition(":")
    if precision not in BYTES or mode not in MODES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PRECISION:MODE with PRECISION one of "
                                         f"{', '.join(BYTES)} and MODE one of {', '.join(MODES)}")
    if precision == "fp16" and "graphs" in mode:
        raise argparse.ArgumentTypeError(f"{text!r}: fp16's loss scaler cannot run in a CUDA graph")
    return precision, mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--nodes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--cells", type=parse_cell, nargs="+", default=[parse_cell(c) for c in DEFAULT_CELLS],
                        help=f"PRECISION:MODE pairs, MODE one of {', '.join(MODES)} (fp32:eager, the "
                             "reference of every speed-up, is always run first)")
    parser.add_argument("--models", nargs="+", default=["multiscale_gnn", "meshgraphnet"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per cell")
    parser.add_argument("--warmup", type=int, default=3,
                        help="warm-up steps per cell (compiled: at least 2, and until a step compiles nothing)")
    parser.add_argument("--samples", type=int, default=4, help="distinct heat2d meshes the batches cycle through")
    parser.add_argument("--sample-nodes", type=int, default=SAMPLE_NODES,
                        help="about how many nodes each of those meshes has (smaller: a quicker smoke run)")
    parser.add_argument("overrides", nargs="*", help="config overrides for every model (e.g. loss=stage2)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no GPU")
    cells = list(dict.fromkeys([("fp32", "eager"), *args.cells]))  # the reference first
    # one compiled graph per (model, precision) and maybe per size: well over dynamo's default
    # limit of 8, past which it would silently fall back to eager
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))

    loads = workloads(args)
    copy_bw, add_bw = measure_bandwidth(device)
    bandwidth = max(copy_bw, add_bw)
    print(machine_line(f"device {device}, memory bandwidth {copy_bw / 1e9:.0f} GB/s (copy), "
                       f"{add_bw / 1e9:.0f} GB/s (add_), floor uses {bandwidth / 1e9:.0f} GB/s; "
                       f"{args.steps} timed steps after warm-up, heat2d batches"))
    print_workloads(loads)
    print("\n| model | nodes | graphs | precision | mode | step (ms) | nodes/s | graphs/s | peak (GiB) | "
          "floor (ms) | fraction of floor | speed-up vs eager fp32 | warm-up (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    results: dict[tuple[str, int, str, str], Cell] = {}
    oom: set[tuple[str, str, str]] = set()
    failed = False
    current_model = None
    for w in loads:
        if w.model != current_model:  # compiled graphs of another model are of no further use
            torch._dynamo.reset()
            current_model = w.model
        try:
            batch = w.batch.to(device)
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            batch = None
        for precision, mode in cells:
            if batch is None:
                cell = Cell(error="OOM (moving the batch)")
            elif (w.model, precision, mode) in oom:
                cell = Cell(error="OOM (skipped: a smaller batch was OOM)")
            else:
                cell = safe_cell(w.cfg, w.prepared, batch, precision, mode, device, args.steps, args.warmup)
            results[(w.model, w.nodes, precision, mode)] = cell
            if cell.error.startswith("OOM"):
                oom.add((w.model, precision, mode))
            failed |= cell.error.startswith("failed")
            print_row(w, precision, mode, cell, results.get((w.model, w.nodes, "fp32", "eager")), bandwidth)
        del batch
        release(device)
    print_targets(loads, results, bandwidth)
    if failed:
        sys.exit(1)


def print_row(w: Workload, precision: str, mode: str, cell: Cell, reference: Cell | None,
              bandwidth: float) -> None:
    floor_s = w.traffic.bytes(precision, w.parameters) / bandwidth
    head = f"| {w.model} | {w.nodes:,} | {w.batch.num_graphs} | {precision} | {mode} |"
    if cell.error:
        print(f"{head} {cell.error} | | | | {1e3 * floor_s:.2f} | | | |", flush=True)
        return
    peak = "-" if cell.peak_bytes is None else f"{cell.peak_bytes / 2 ** 30:.2f}"
    speedup = (f"{reference.step_s / cell.step_s:.2f}x"
               if reference is not None and not reference.error else "-")
    warm = f"{cell.warmup_s:.1f} ({cell.warmup_steps} steps"
    if "compile" in mode:
        warm += f", {cell.graphs} graphs compiled"
        if cell.recompiles:
            warm += f"; {cell.recompiles} recompiled while timed!"
    warm += ")"
    print(f"{head} {1e3 * cell.step_s:.2f} | {fmt_rate(w.nodes / cell.step_s)} | "
          f"{w.batch.num_graphs / cell.step_s:.2f} | {peak} | {1e3 * floor_s:.2f} | "
          f"{floor_s / cell.step_s:.3f} | {speedup} | {warm} |", flush=True)


def target_for(nodes: int) -> tuple[float, float]:
    return TARGETS[min(TARGETS, key=lambda size: abs(math.log(nodes / size)))]


def print_targets(loads: list[Workload], results: dict, bandwidth: float) -> None:
    """The fastest bf16 cell with compile and/or graphs against the targets, per model and batch."""
    rows = []
    for w in loads:
        ref = results.get((w.model, w.nodes, "fp32", "eager"))
        fast = {mode: cell for (model, nodes, precision, mode), cell in results.items()
                if (model, nodes, precision) == (w.model, w.nodes, "bf16") and mode != "eager" and not cell.error}
        if ref is None or ref.error or not fast:
            continue
        mode, best = min(fast.items(), key=lambda item: item[1].step_s)
        speedup = ref.step_s / best.step_s
        fraction = w.traffic.bytes("bf16", w.parameters) / bandwidth / best.step_s
        want_speedup, want_fraction = target_for(w.nodes)
        rows.append(f"| {w.model} | {w.nodes:,} | bf16 {mode} | {speedup:.2f}x | >= {want_speedup:g}x "
                    f"{'met' if speedup >= want_speedup else 'missed'} | {fraction:.3f} | >= {want_fraction:.2f} "
                    f"{'met' if fraction >= want_fraction else 'missed'} |")
    if rows:
        print("\nTargets: the fastest bf16 cell with compile and/or CUDA graphs against eager fp32 and the "
              "bandwidth floor\n")
        print("| model | nodes | fastest | speed-up vs eager fp32 | target | fraction of floor | target |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(rows))


if __name__ == "__main__":
    main()
