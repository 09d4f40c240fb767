"""Multi-process training plumbing: one process per GPU (or a few CPU processes with gloo), PyTorch DDP.

``torchrun --nproc_per_node N -m nerfkit train ...`` (or ``nerfkit train --gpus N``, which runs that) starts N
copies of the trainer; each reads its place from torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``). :class:`World` is what the trainer sees of the others: a few collectives, each a no-op in a
single process, so the training loop has no branches for it. Every collective waits at most ``--dist-timeout``
seconds, so a process whose peer died or stalled raises (:class:`DistributedError`) instead of hanging; torchrun
then stops the others and names the process that failed first.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

__all__ = ["World", "DistributedError", "init_world", "launch_command", "launch"]


class DistributedError(RuntimeError):
    """A process of a distributed run lost its peers (one died or stalled), or the ranks disagree."""


@dataclass
class World:
    """This process's place among the training processes (``rank`` of ``size``; a single process is rank 0
    of 1) and the collectives the trainer needs. ``device``: where collective tensors live (the training
    device: CUDA with NCCL, CPU with gloo)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    timeout_s: float = 600.0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, validates and saves."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel (gradients averaged over the processes during ``backward``),
        or ``module`` itself in a single process. Buffers are synced once here, not at every forward pass:
        the trainer sends rank 0's buffers itself when a method's ``before_step`` changes them."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
            return DistributedDataParallel(module, device_ids=device_ids, forward_sync_buffers=False)
        return DistributedDataParallel(module, device_ids=device_ids, broadcast_buffers=False)

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                torch.distributed.barrier(device_ids=[self.device.index])
            else:
                torch.distributed.barrier()

    def all_reduce_(self, values: torch.Tensor) -> torch.Tensor:
        """Sums ``values`` (on ``self.device``) over the processes, in place."""
        if self.distributed:
            torch.distributed.all_reduce(values)
        return values

    def max(self, value: float) -> float:
        """The largest ``value`` over the processes (e.g. a step's wall time, so all agree on the clock)."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return float(t.item())

    def gather(self, obj):
        """``[obj of rank 0, obj of rank 1, ...]`` on every process (small picklable objects)."""
        if not self.distributed:
            return [obj]
        out = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Copies rank 0's persistent buffers (the occupancy grid's ``occs`` and ``binaries``, ...) to every
        process, so that estimator state stays identical while each rank draws different rays."""
        if not self.distributed:
            return
        params = {name for name, _ in module.named_parameters()}
        for name, tensor in module.state_dict(keep_vars=True).items():
            if name not in params and isinstance(tensor, torch.Tensor):
                torch.distributed.broadcast(tensor.data, src=0)

    def check_in_sync(self, module: nn.Module, step: int, *values) -> None:
        """Raises :class:`DistributedError` unless every process holds bit-identical parameters and buffers (and
        equal ``values``, such as the next step's batch size)."""
        if not self.distributed:
            return
        digest = hashlib.blake2b(repr(values).encode(), digest_size=16)
        for name, tensor in module.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
        digests = self.gather(digest.hexdigest())
        if len(set(digests)) > 1:
            differ = [r for r, d in enumerate(digests) if d != digests[0]]
            raise DistributedError(f"step {step}: the model or training state on rank(s) {differ} differs from "
                                   "rank 0's; the processes no longer train the same model")

    def lost_peer(self, err: BaseException) -> bool:
        """Whether ``err`` comes from a collective whose peer died or timed out (gloo raises plain
        RuntimeErrors, NCCL DistBackendErrors)."""
        if not self.distributed or not isinstance(err, RuntimeError) or isinstance(err, DistributedError):
            return False
        if isinstance(err, torch.distributed.DistError):
            return True
        text = str(err)
        return any(k in text for k in ("gloo", "Gloo", "NCCL", "Connection reset", "Connection closed",
                                       "Timed out", "timed out", "Broken pipe"))

    def explain(self, err: BaseException) -> DistributedError:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return DistributedError(
            f"rank {self.rank} of {self.size} lost contact with the other training processes: one of them died "
            f"(torchrun's report then names it) or stalled for more than --dist-timeout {self.timeout_s:g} s. "
            f"The collective said: {first}")

    def close(self) -> None:
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def init_world(device: torch.device, timeout_s: float) -> World:
    """This process's :class:`World`, from torchrun's environment; joins the process group when there are
    several processes (NCCL on CUDA, each process on GPU ``LOCAL_RANK``; gloo on CPU).

    Args:
        device: the resolved training device (``cuda`` becomes ``cuda:LOCAL_RANK`` in a multi-process run).
        timeout_s: how long any collective may wait for the other processes before raising.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if size <= 1:
        return World(device=device, timeout_s=timeout_s)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"process {rank} (local rank {local_rank}) has no GPU: torch sees "
                             f"{torch.cuda.device_count()} CUDA device(s); start at most that many processes per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return World(rank, size, local_rank, device, timeout_s)


def launch_command(n_gpus: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``nerfkit <argv>`` (without ``--gpus``) in ``n_gpus`` processes."""
    args, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--gpus":
            skip = True
        elif not arg.startswith("--gpus="):
            args.append(arg)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n_gpus}",
            "-m", "nerfkit", *args]


def launch(n_gpus: int, argv: list[str], device: str = "auto") -> int:
    """``nerfkit train --gpus N``: runs the same command under torchrun with one process per GPU and returns
    its exit status."""
    if "WORLD_SIZE" in os.environ:
        raise ValueError("--gpus: this process already runs under torchrun; drop --gpus (torchrun's "
                         "--nproc_per_node sets the number of processes)")
    if device not in ("auto", "cuda"):
        raise ValueError(f"--gpus {n_gpus} trains on CUDA devices; drop --device {device}")
    available = torch.cuda.device_count()
    if available < n_gpus:
        raise ValueError(f"--gpus {n_gpus} asks for {n_gpus} CUDA device(s), but torch sees {available}")
    return subprocess.call(launch_command(n_gpus, argv))
