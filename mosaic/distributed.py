"""One run on many processes (``torchrun``): the process group, the batch split rule, global-batch
statistics, the DDP wrapper, and who writes.

The scheme, chosen so that a run on N processes gives the numbers of the same run on one process
(up to float rounding), and so that a checkpoint resumes on any number of processes:
- ``batch_size`` is the *global* batch. Every rank draws the whole global batch (latent codes from
  the seeded global RNG, OOD / in-domain images from the seeded batchers) and keeps its own slice
  (``Shard.take``): rank r takes rows ``[r·b, (r+1)·b)`` with ``b = batch_size / world_size``.
  So the data order and the latent codes do not depend on the world size, and every rank's RNGs
  and batchers stay in step (rank 0's, saved in the checkpoint, are every rank's).
- The split rule: ``batch_size`` must be a multiple of the world size, else the run is refused
  before anything is built (``local_batch``). Equal slices make DDP's gradient average (the mean of
  the per-rank mean losses) the global mean loss.
- Statistics over the batch are global: ``loss_balance``'s class marginal (``Shard.mean``, with
  gradients reaching every rank's slice) and, with ``sync_bn=True`` (the default), BatchNorm
  (torch's SyncBatchNorm on CUDA, ``GlobalBatchNorm`` elsewhere). ``sync_bn=False`` keeps each
  rank's own batch statistics: faster, but the numbers then depend on the world size, and a
  checkpoint resumes only on the world size that wrote it.
- Rank 0 alone writes the run folder and evaluates (on its own, unwrapped student: evaluation
  uses no collective); the other ranks wait at the next step's all-reduce.

Outside torchrun (no ``WORLD_SIZE`` > 1) every helper here is a no-op: one process, untouched.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from mosaic import checkpoint
from mosaic.config import resolve_device


# ----------------------------------------------------------------------------- the process group

def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    """True on rank 0, the process that writes the run folder (and on a single process)."""
    return rank() == 0


def setup(device: str = "auto") -> str:
    """Join torchrun's process group when launched so (once; nccl on GPUs, gloo on the CPU) and return
    this rank's device: ``cuda:LOCAL_RANK`` for 'auto'/'cuda' on GPUs, else ``resolve_device(device)``.

    Reads the env variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); a
    process group initialised by the caller is used as it is.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if (launched or world_size() > 1) and device.startswith("cuda:"):
        raise ValueError(f"device={device!r} would put every process on one GPU; under torchrun use device='auto' "
                         "or 'cuda' (each process takes cuda:LOCAL_RANK), or limit the GPUs with CUDA_VISIBLE_DEVICES")
    cuda = device != "cpu" and torch.cuda.is_available()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if launched and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if cuda else "gloo")
    if world_size() > 1 and cuda and device in ("auto", "cuda"):
        return f"cuda:{local}"
    return resolve_device(device)


def shutdown() -> None:
    """Leave the process group (the command's last act under torchrun)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


@contextlib.contextmanager
def rank0_first() -> Iterator[None]:
    """Rank 0 runs the block first (say, trains and caches the teacher, downloads data), then the other
    ranks run it (and find the cache), so no two processes write one file."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a picklable object)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextlib.contextmanager
def writer(out: Path) -> Iterator[None]:
    """Rank 0 makes ``out``, holds its lock and clears what a killed writer left; other ranks write nothing."""
    if not is_main():
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with checkpoint.folder_lock(out):  # a second run on this out_dir gets RunLockedError
        checkpoint.remove_temp_files(out)  # no live writer: we hold the lock
        yield


# ----------------------------------------------------------------------------- the batch split rule

def local_batch(batch_size: int, world: int | None = None) -> int:
    """The per-rank batch: ``batch_size`` (the global batch) / world size; a batch that does not divide
    is refused, saying what to choose instead."""
    world = world_size() if world is None else world
    if batch_size % world:
        low, high = batch_size // world * world, (batch_size // world + 1) * world
        raise ValueError(f"batch_size={batch_size} is the global batch and must split evenly over the {world} "
                         f"processes; choose a multiple of {world} (e.g. {low or high} or {high}) or a process "
                         "count that divides it")
    return batch_size // world


@dataclass(frozen=True)
class Shard:
    """This rank's part of every global batch (one process: all of it)."""

    rank: int = 0
    world: int = 1

    def take(self, x: torch.Tensor) -> torch.Tensor:
        """Rows ``[rank·b, (rank+1)·b)`` of a global batch x (B, ...), b = B / world."""
        if self.world == 1:
            return x
        b = local_batch(len(x), self.world)
        return x[self.rank * b:(self.rank + 1) * b]  # (b, ...)

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        """The mean over dim 0 of the global batch, from this rank's slice x (b, ...): (...) on every rank.

        Gradients reach every rank's slice (the all-reduce's backward sums them), so after DDP's
        gradient average the update is that of one process holding the whole batch.
        """
        m = x.mean(dim=0)
        if self.world == 1:
            return m
        return all_reduce_sum(m) / self.world  # equal slices: the mean of the means


class _AllReduceSum(torch.autograd.Function):
    """The sum over ranks of a tensor, differentiable: the gradient of each rank's input is the sum over
    ranks of the output's gradients (every rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Differentiable sum of ``x`` over the ranks."""
    return _AllReduceSum.apply(x)


def shard() -> Shard:
    """This process's Shard."""
    return Shard(rank(), world_size())


def average(row: dict[str, float]) -> dict[str, float]:
    """A step's floats averaged over the ranks (one all-reduce): each is a mean over the rank's equal
    slice, so their mean is the global batch's value, the same on every rank."""
    if world_size() == 1:
        return row
    keys = list(row)
    on = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"  # nccl: GPU tensors only
    values = torch.tensor([float(row[k]) for k in keys], dtype=torch.float64, device=on)
    dist.all_reduce(values)
    return dict(zip(keys, (values / world_size()).tolist()))


# ----------------------------------------------------------------------------- global-batch BatchNorm, DDP

class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over every rank, on any device
    (torch's SyncBatchNorm runs on GPUs only). Eval mode, and a single process, are plain BatchNorm.

    Two all-reduces per forward: the sum and count (-> mean), then the squared deviations (-> variance),
    the same two-pass statistics a single process computes. Gradients flow through both.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"GlobalBatchNorm expects (B, C, ...) input, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        total = all_reduce_sum(torch.cat([xf.sum(dims), xf.new_tensor([xf.numel() / xf.shape[1]])]))  # (C + 1,)
        n = total[-1]
        mean = total[:-1] / n  # (C,)
        var = all_reduce_sum((xf - mean.view(shape)).pow(2).sum(dims)) / n  # (C,) biased, as BN normalises
        if self.track_running_stats:
            self._update_running(mean.detach(), var.detach() * n / (n - 1).clamp_min(1))
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var_unbiased: torch.Tensor) -> None:
        self.num_batches_tracked += 1
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(var_unbiased.to(self.running_var.dtype), momentum)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm computing global-batch statistics: SyncBatchNorm when its parameters
    are on a GPU, GlobalBatchNorm otherwise. Parameters and buffers are shared (optimisers stay valid;
    state_dict keys are unchanged, so checkpoints move between world sizes)."""
    if any(p.is_cuda for p in module.parameters()):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, global_batchnorm(child))
    return module


def wrap(module: nn.Module, device: str, sync_bn: bool = True) -> nn.Module:
    """A trained player for a multi-process run: global-batch BatchNorm (``sync_bn``), then
    DistributedDataParallel (gradients averaged over ranks). One process: ``module`` itself.

    ``broadcast_buffers=False``: BatchNorm's running statistics are read only by rank 0 (evaluation,
    checkpoints), so no rank needs the others'.
    """
    if world_size() == 1:
        return module
    if sync_bn:
        module = global_batchnorm(module)
    ids = [torch.device(device).index] if torch.device(device).type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, **_NO_BUFFER_SYNC)


# no buffer broadcast at each forward (newer torch names the option forward_sync_buffers)
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
                   else {"broadcast_buffers": False})


def unwrap(m: nn.Module) -> nn.Module:
    """The plain module under torch.compile and DDP wrappers (checkpoints hold its keys)."""
    while True:
        if hasattr(m, "_orig_mod"):
            m = m._orig_mod
        elif isinstance(m, DistributedDataParallel):
            m = m.module
        else:
            return m


def without_ddp(m: nn.Module | None) -> nn.Module | None:
    """The module to call for a forward that computes no gradients for its own parameters: under DDP the
    wrapped module (a DDP forward waits for a backward into its parameters), else ``m`` unchanged."""
    inner = getattr(m, "_orig_mod", m)
    return inner.module if isinstance(inner, DistributedDataParallel) else m


def check_resume(saved_world: int, sync_bn: bool, path: Path) -> None:
    """A checkpoint resumes on another world size only when its numbers do not depend on it (sync_bn)."""
    if saved_world != world_size() and not sync_bn:
        raise ValueError(f"{path} was written by {saved_world} process(es) with sync_bn=False (BatchNorm over each "
                         f"process's own slice), so its numbers depend on the process count; resume it with "
                         f"{saved_world} process(es) (torchrun --nproc_per_node {saved_world}), or pass resume=False "
                         "to start over")


def describe(batch_size: int) -> dict[str, int]:
    """What metrics.json records about the launch."""
    return {"world_size": world_size(), "batch_per_rank": local_batch(batch_size)}


__all__ = ["world_size", "rank", "is_main", "setup", "shutdown", "barrier", "rank0_first", "broadcast",
           "writer", "local_batch", "Shard", "shard", "all_reduce_sum", "average", "GlobalBatchNorm", "global_batchnorm", "wrap",
           "unwrap", "without_ddp", "check_resume", "describe"]
