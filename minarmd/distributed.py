r"""Data-parallel training with PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

    torchrun --standalone --nproc_per_node=8 -m minarmd.train --preset gpt2-small --data-dir data/openwebtext

``torchrun`` starts one process per GPU and sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; without
them (plain ``python -m minarmd.train``) everything here is a no-op and training is single-process.

**One optimiser step is the same on any number of processes.** A step averages the gradient of
``grad_accum`` micro-batches of ``batch_size`` windows (the global batch). With W processes, rank r
computes the micro-batches :math:`k \in [rG/W, (r+1)G/W)` and DDP averages the W gradients:

.. math::  \frac{1}{W}\sum_{r}\ \sum_{k \in r} \frac{W}{G}\,\nabla \ell_k \;=\; \frac{1}{G}\sum_{k=1}^{G} \nabla \ell_k ,

so each micro-batch loss is scaled by W / G = 1 / (micro-batches per rank). Every rank draws the
windows and orders of *all* G micro-batches from the same seeded generators (cheap CPU work) and
keeps its own: the inputs are exactly those of a single-process run, whatever W is, and resuming a
checkpoint on another number of GPUs continues the same stream. Gradients are all-reduced once per
step (``no_sync`` on all but the last local micro-batch). Rank 0 alone logs, evaluates and writes
checkpoints. CUDA processes use NCCL, CPU processes gloo (how the tests run 2 processes on a laptop).

**A clean end.** ``teardown`` waits for every rank (a barrier: rank 0 validates and checkpoints
after the last step while the others are done) and then destroys the process group, so its
threads finish while the interpreter is alive. A process group still alive when Python shuts down
can abort the process: a gloo worker thread that drops the last reference to a finished
collective's tensor needs the GIL, and a thread that asks for the GIL during finalisation is
ended with ``pthread_exit``, whose unwinding through a C++ destructor is ``std::terminate``
("terminate called without an active exception", SIGABRT; torchrun then stops the other ranks).
``destroy_process_group`` alone does not free the group if anything still references it: importing
``torch._dynamo`` after ``init_process_group`` (DDP's constructor does) imports
``torch.distributed.nn.functional``, whose ``group=group.WORLD`` default arguments hold the
group for the life of the process. ``setup`` therefore imports it first. The group must then die
where the GIL is released (in ``destroy_process_group``), not in a DDP reducer's destructor, which
holds the GIL while the group's destructor waits for its worker threads: ``teardown`` drops the
reducers of the models ``wrap`` made first (the DDP model is done with then).
"""
from __future__ import annotations

import os
import sys
import weakref
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Context", "resolve_device", "micro_batches", "check_bf16", "setup", "wrap", "sync_unless_last",
           "sum_over_ranks", "teardown"]


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank among ``world`` processes and its device."""

    rank: int = 0  # global rank (0 = the one that logs and checkpoints)
    world: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (its GPU index)
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """"auto" -> cuda when available; "cuda" without a GPU -> a clear error."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device='cuda' but CUDA is not available (no GPU or a CPU build of torch); "
                             "use --device cpu")
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} GPU(s) are visible: "
                             f"start at most that many processes per node (torchrun --nproc_per_node)")
        return torch.device("cuda", local_rank)
    return torch.device(device)


def micro_batches(grad_accum: int, ctx: Context) -> range:
    """The micro-batches (of 0..grad_accum-1) this rank computes; W must divide grad_accum."""
    if grad_accum % ctx.world:
        raise ValueError(f"the world size ({ctx.world} processes) must divide grad_accum={grad_accum}: each "
                         f"process computes grad_accum / world micro-batches of the global batch (batch_size x "
                         f"grad_accum windows). Use a --grad-accum that {ctx.world} divides (e.g. "
                         f"{ctx.world * -(-grad_accum // ctx.world)}), or a --nproc_per_node that divides {grad_accum}")
    per_rank = grad_accum // ctx.world
    return range(ctx.rank * per_rank, (ctx.rank + 1) * per_rank)


def check_bf16(bf16: bool, device: torch.device) -> None:
    """bf16 autocast is the GPU fast path: refuse it where it cannot run, saying what to pass instead."""
    if not bf16:
        return
    if device.type != "cuda":
        raise ValueError("bf16=True needs a CUDA GPU (bf16 autocast is the GPU fast path); pass --no-bf16 "
                         "for a CPU run (the gpt2-* presets turn it on)")
    if not torch.cuda.is_bf16_supported():
        raise ValueError(f"bf16=True but {torch.cuda.get_device_name(device)} does not support bf16 "
                         f"(it needs an Ampere or newer GPU); pass --no-bf16")


def setup(device: str, grad_accum: int, bf16: bool = False) -> Context:
    """Join the process group that torchrun prepared (if any) and pick this process's device.

    Bad settings (no GPU for device="cuda" or bf16, a world size that does not divide
    grad_accum) raise a ValueError before any process group is joined.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        ctx = Context(device=resolve_device(device))
        check_bf16(bf16, ctx.device)
        return ctx
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    ctx = Context(rank, world, local_rank, resolve_device(device, local_rank))
    check_bf16(bf16, ctx.device)
    micro_batches(grad_accum, ctx)  # fail before joining the group, with the fix in the message
    if not dist.is_initialized():
        if ctx.device.type == "cuda":
            torch.cuda.set_device(ctx.device)
        # Before the group exists: imported later (by DDP), torch.distributed.nn.functional's default
        # arguments would keep the group alive past destroy_process_group (see the module docstring)
        import torch._dynamo as _dynamo  # noqa: F401  (`as`: keeps `torch` global here)
        dist.init_process_group("nccl" if ctx.device.type == "cuda" else "gloo")
    return ctx


_wrapped: "weakref.WeakSet[DistributedDataParallel]" = weakref.WeakSet()  # what teardown unhooks


def wrap(model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """DDP around the (compiled) model when distributed; the model itself otherwise."""
    if not ctx.distributed:
        return model
    ddp = DistributedDataParallel(model, device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    _wrapped.add(ddp)
    return ddp


def sync_unless_last(model: torch.nn.Module, last: bool):
    """Skip DDP's gradient all-reduce on every micro-batch but the rank's last one."""
    if isinstance(model, DistributedDataParallel) and not last:
        return model.no_sync()
    return nullcontext()


def sum_over_ranks(value: float, ctx: Context) -> float:
    """The sum of a number over all processes (e.g. each rank's share of the step's loss)."""
    if not ctx.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item())


def teardown(ctx: Context, failed: bool | None = None) -> None:
    """Leave the process group: wait for every rank, then destroy it (a no-op on one process).

    Call it on every way out of a run (a ``finally:``). After a normal end the ranks first meet at a
    barrier, so none tears down while another still works (rank 0's last validation and
    checkpoint). After an error (``failed``; by default: an exception is propagating) there is no
    barrier: the other ranks may be inside a collective, or gone, and torchrun stops them anyway.
    """
    if not (ctx.distributed and dist.is_initialized()):
        return
    if failed is None:
        failed = sys.exc_info()[0] is not None  # called from a finally: block while an exception propagates
    try:
        if not failed:
            dist.barrier(device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
    finally:
        # A DDP model's reducer holds the group too, and frees it holding the GIL: were it the last
        # holder, the group's destructor would wait for a gloo worker that waits for the GIL (a
        # hang). Dropped first, the group's last reference goes here, where the GIL is released.
        for ddp in list(_wrapped):
            for name in ("logger", "reducer"):  # the logger holds the reducer
                ddp.__dict__.pop(name, None)
        _wrapped.clear()
        dist.destroy_process_group()
