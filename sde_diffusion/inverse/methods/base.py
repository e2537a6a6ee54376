"""The interface every inverse-problem method shares: ``method.sample(sde, score_fn, op, y, ...)``.

Score transforms (DPS, PiGDM) build one more ``score_fn(x, t)`` and hand it to
:func:`sde_diffusion.sampling.sample` with any solver; methods that change the state
(replacement, RePaint, SMC) wrap a solver or drive their own loop. ``supports`` says which
solvers a method runs with: ``"all"``, ``"fixed"`` (fixed-step solvers) or ``"own"`` (its own
kernel; ``solver`` must be None).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ...sampling.driver import SampleResult, sample
from ..base import Operator
from ._common import ScoreFn, observation


class InverseMethod(ABC):
    """A sampler of p(x | y) for y = A x + sigma_y n, given the prior's score."""

    supports: ClassVar[str] = "all"

    @abstractmethod
    def sample(
        self,
        sde: Any,
        score_fn: ScoreFn,
        op: Operator,
        y: Tensor,
        shape: Sequence[int],
        *,
        solver: Any = None,
        steps: int | None = None,
        eps: float | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        progress: bool = False,
    ) -> SampleResult:
        """Draw ``shape[0]`` samples of p(x_eps | y) by the method.

        Args:
            sde: the forward SDE of the prior's score.
            score_fn: the prior score ``s(x, t)`` (exact for a mixture, or a trained model).
            op: the observation operator, with its ``sigma_y``.
            y: one observation ``obs_shape`` (or ``(1, *obs_shape)``) for every sample, or one
                per sample ``(B, *obs_shape)``.
            shape: ``(B, *event_shape)``.
            solver: the :class:`solvers.Solver` to integrate with (see ``supports``).
            steps, eps: the solver's steps and end time (default ``sde.eps``).
            generator: seeds the prior draw and all noise.
            device, dtype: where and in which dtype the state lives.
            progress: a progress bar over the steps.

        Returns:
            :class:`~sde_diffusion.sampling.SampleResult`; ``nfe`` counts prior-score
            evaluations per returned sample (a score transform's vector-Jacobian product
            is counted with its evaluation).
        """


class ScoreTransform(InverseMethod):
    """A method that is a score transform: ``posterior_score`` and any solver."""

    supports: ClassVar[str] = "all"

    @abstractmethod
    def posterior_score(
        self, sde: Any, score_fn: ScoreFn, op: Operator, y: Tensor, event_shape: Sequence[int]
    ) -> ScoreFn:
        """``score_fn(x, t)`` ~ grad_x log p_t(x | y), for events of ``event_shape``."""

    def sample(
        self,
        sde: Any,
        score_fn: ScoreFn,
        op: Operator,
        y: Tensor,
        shape: Sequence[int],
        *,
        solver: Any = None,
        steps: int | None = None,
        eps: float | None = None,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        progress: bool = False,
    ) -> SampleResult:
        if solver is None:
            raise ValueError(f"{type(self).__name__} is a score transform: give a solver")
        y = observation(op, y, shape[1:], shape[0])
        score = self.posterior_score(sde, score_fn, op, y, shape[1:])
        return sample(
            sde,
            score,
            solver,
            shape,
            steps=steps,
            eps=eps,
            generator=generator,
            device=device,
            dtype=dtype,
            progress=progress,
        )
