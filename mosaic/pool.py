"""A replay memory of synthetic images for the student (``RunConfig.pool``).

Without it (the paper's loop) the student distills on the generator's *current* samples only, so at a short
budget it sees a narrow, moving slice of what the generator has learned to draw. With a pool of capacity N,
each student step's fresh synthetic batch is pushed into a ring buffer of the last N synthetic images and
the student trains on as many images drawn uniformly from it (the fresh ones included): the same number of
images per step, the same generator forwards, from a wider range of the generator's history. Data-free
distillation uses such memories (CMI's data pool, Fang et al. 2021); MosaicKD's paper does not.

The pool is part of a run's state: its images and fill level are checkpointed, so a resumed run draws the
same batches as an unbroken one. Draws use torch's global RNG (seeded and checkpointed by ``mosaic.train``).
"""
from __future__ import annotations

import torch


class SamplePool:
    """A ring buffer of the last ``capacity`` images pushed, kept in the dtype and on the device they arrive in."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"SamplePool capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.images: torch.Tensor | None = None  # (capacity, C, H, W) once the first batch arrives
        self.size = 0  # how many slots hold an image
        self.head = 0  # the slot the next image goes to

    def __len__(self) -> int:
        return self.size

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        """Store x (B, C, H, W), overwriting the oldest images once full (only the last ``capacity`` of x if B is larger)."""
        x = x.detach()[-self.capacity:]
        if self.images is None:
            self.images = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype, device=x.device)
        idx = (self.head + torch.arange(len(x), device=x.device)) % self.capacity
        self.images[idx] = x.to(self.images.dtype)
        self.head = (self.head + len(x)) % self.capacity
        self.size = min(self.size + len(x), self.capacity)

    def sample(self, n: int) -> torch.Tensor:
        """n images drawn uniformly with replacement from the stored ones: (n, C, H, W)."""
        if self.size == 0:
            raise RuntimeError("SamplePool.sample on an empty pool: push a batch first")
        idx = torch.randint(self.size, (n,), device=self.images.device)
        return self.images[idx]

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "size": self.size, "head": self.head,
                "images": None if self.images is None else self.images[: self.size].clone()}

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity:
            raise ValueError(f"a pool of capacity {state['capacity']} cannot be loaded into one of {self.capacity}")
        self.size, self.head, self.images = state["size"], state["head"], None
        if state["images"] is not None:
            stored = state["images"]
            self.images = torch.empty((self.capacity, *stored.shape[1:]), dtype=stored.dtype, device=stored.device)
            self.images[: self.size] = stored


__all__ = ["SamplePool"]
