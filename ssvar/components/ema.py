"""EMA teacher: an exponential moving average of a student network.

The teacher is a submodule of the method, so it is saved in checkpoints and restored on resume.
Its parameters never receive gradients and are not given to the optimiser. It predicts in eval
mode under ``torch.no_grad()``.

BatchNorm running statistics need an explicit policy (libraries differ silently):

* ``"copy"`` (default, as USB): the teacher's buffers are copied from the student at each update;
* ``"ema"``: float buffers are averaged like parameters (integer counters copied);
* ``"teacher_forward"``: buffers are left alone; they change only if the method runs the
  teacher in train mode.

Under DDP the students are identical after each step (gradients are averaged) but BatchNorm
statistics are per rank, so after copying or averaging buffers the teacher takes rank 0's:
teachers stay identical on every rank.
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import torch
from torch import nn

from ssvar.components.distributed import broadcast_from_rank0


class EMATeacher(nn.Module):
    """θ_T ← d·θ_T + (1 − d)·θ_S after each optimiser step.

    Args:
        decay: EMA decay d (the starting value when a schedule is used).
        final_decay: decay reached at the end of training for ``schedule="cosine"``.
        schedule: ``"constant"``; ``"cosine"`` from ``decay`` to ``final_decay`` over training
            (BYOL/solo-learn); ``"rampup"``: ``min(decay, 1 - 1/(step + 1))``, the Mean Teacher
            warm-up that lets the teacher follow the student closely at first.
        buffers: BatchNorm statistics policy, see the module docstring.
    """

    def __init__(
        self,
        decay: float = 0.999,
        final_decay: float | None = None,
        schedule: Literal["constant", "cosine", "rampup"] = "constant",
        buffers: Literal["copy", "ema", "teacher_forward"] = "copy",
    ):
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        if schedule not in ("constant", "cosine", "rampup"):
            raise ValueError(f"schedule must be 'constant', 'cosine' or 'rampup', got {schedule!r}")
        if schedule == "cosine" and final_decay is None:
            raise ValueError("schedule='cosine' needs final_decay")
        if buffers not in ("copy", "ema", "teacher_forward"):
            raise ValueError(f"buffers must be 'copy', 'ema' or 'teacher_forward', got {buffers!r}")
        self.decay = decay
        self.final_decay = final_decay
        self.schedule = schedule
        self.buffers_policy = buffers
        self.model: nn.Module | None = None
        # Optimiser steps already folded in: guards against double updates and survives resume.
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_decay", torch.tensor(decay))
        self._num_updates: int | None = None  # host copy of num_updates: no device sync per step

    def attach(self, student: nn.Module) -> EMATeacher:
        """Start the teacher as a copy of ``student`` (call once, in the method's constructor)."""
        self.model = copy.deepcopy(student)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> EMATeacher:
        # The teacher stays in eval mode whatever Lightning does to the parent module.
        super().train(mode)
        if self.model is not None:
            self.model.eval()
        return self

    def current_decay(self, step: int, total_steps: int) -> float:
        if self.schedule == "cosine":
            progress = min(1.0, step / max(1, total_steps))
            return self.final_decay - (self.final_decay - self.decay) * (math.cos(math.pi * progress) + 1) / 2
        if self.schedule == "rampup":
            return min(self.decay, 1.0 - 1.0 / (step + 1))
        return self.decay

    @torch.no_grad()
    def update(self, student: nn.Module, step: int, total_steps: int = 1) -> None:
        """Fold in the student after optimiser step ``step`` (1-based); repeated calls for the
        same step are ignored, so only real optimiser steps count."""
        if self.model is None:
            raise RuntimeError("EMATeacher.attach(student) was never called")
        if self._num_updates is None:  # read the buffer once (after construction or a load)
            self._num_updates = int(self.num_updates)
        if step <= self._num_updates:
            return
        d = self.current_decay(step, total_steps)
        # The teacher is a deep copy of the student: parameters line up in order.
        t_params = list(self.model.parameters())
        s_params = [p.detach() for p in student.parameters()]
        if len(t_params) != len(s_params):
            raise RuntimeError("the student no longer matches the teacher it was attached to")
        torch._foreach_lerp_(t_params, s_params, 1.0 - d)  # t += (1 - d) (s - t), one fused call
        if self.buffers_policy != "teacher_forward":
            t_bufs = dict(self.model.named_buffers())
            for name, b in student.named_buffers():
                t = t_bufs[name]
                if self.buffers_policy == "ema" and b.dtype.is_floating_point:
                    t.mul_(d).add_(b.detach(), alpha=1.0 - d)
                else:
                    t.copy_(b)
            broadcast_from_rank0(self.model)
        self.num_updates.fill_(step)
        self._num_updates = step
        self.last_decay.fill_(d)

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._num_updates = None  # the loaded counter is read again at the next update

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        if self.model is None:
            raise RuntimeError("EMATeacher.attach(student) was never called")
        self.model.eval()
        return self.model(*args, **kwargs)
