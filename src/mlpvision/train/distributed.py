"""Process-group set-up for ``torchrun``: DistributedDataParallel with gloo on CPU and nccl on GPU."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.distributed.rendezvous import rendezvous

from ..runtime import pick_device

__all__ = ["DistInfo", "barrier", "cleanup", "setup"]


@dataclass(frozen=True)
class DistInfo:
    rank: int  # global rank of this process
    world_size: int  # number of processes
    local_rank: int  # rank on this machine (selects the GPU)
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistInfo:
    """Joins the process group when launched by torchrun (RANK / WORLD_SIZE set), else runs alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        store, rank, world = next(rendezvous("env://"))
        # a fresh key space per torchrun restart, so a restarted group never reads a dead worker's address
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        store = dist.PrefixStore(f"mlpvision/attempt{attempt}/", store)
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo", store=store, rank=rank, world_size=world
        )
    return DistInfo(rank, world, local_rank, dev)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()
