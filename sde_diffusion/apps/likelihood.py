"""``sde-likelihood``: mean NLL and bits/dim through the probability-flow ODE, with a 95% CI.

    sde-likelihood sde=ve solver=ode_scipy num_samples=2000 trace=exact

Draws ``num_samples`` test points from the data distribution, computes log p_eps(x) for each
with :func:`sde_diffusion.likelihood.log_likelihood`, and writes ``logp.npz`` and
``metrics.json`` (last, atomically). The interval is mean +- t_{0.975, n-1} s / sqrt(n) over
test points (it covers the data's spread and the Hutchinson noise, not the ODE error). For a
mixture the exact log p_eps(x) is known, and its mean and the error against it are reported.
Bits/dim is NLL / (D ln 2): mixtures are continuous data, with no quantisation and no data
scaling (``sde_diffusion.bits_per_dim`` holds the dequantised-pixel formula). A failed run
writes ``failure.json`` with the reason instead of ``metrics.json``.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from scipy import stats

from ..bits_per_dim import bits_per_dim
from ..likelihood import log_likelihood
from ._common import (
    atomic_write_json,
    atomic_write_npz,
    check_int,
    resolve_device,
    resolve_dtype,
    set_threads,
)
from ._job import build, check_eps, data_for, explicit_data, score_for, sde_for
from ._precheck import precheck
from ._rundir import run_in_dir

log = logging.getLogger(__name__)
#: what a run writes: a rerun into the same directory needs overwrite=true
OUTPUTS = ("metrics.json", "failure.json", "logp.npz")


def mean_ci95(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, lower, upper) of the Student-t 95% interval for the mean of ``values``."""
    n = values.size
    mean = float(values.mean())
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def run(cfg: DictConfig, out_dir: Path, explicit: bool = False) -> dict[str, Any]:
    """Compute the log-likelihoods as configured; write ``logp.npz`` and ``metrics.json``.

    With a checkpoint and no ``data`` on the command line (``explicit``), the test points are
    its training data's: exact draws of its law, or held-out data."""
    set_threads(cfg.get("threads"))
    device = resolve_device(str(cfg.device))
    dtype = resolve_dtype(str(cfg.dtype))
    num = check_int("num_samples", cfg.num_samples, 2)
    batch_size = check_int("batch_size", cfg.batch_size, 1)
    seed = check_int("seed", cfg.seed, 0)
    n_probes = check_int("n_probes", cfg.n_probes, 1)
    sde, solver = build(cfg.sde, "sde"), build(cfg.solver, "solver")
    data = data_for(cfg.checkpoint, cfg.data, explicit)
    sde = sde_for(cfg.checkpoint, sde)  # a checkpoint is evaluated with the SDE it was trained with
    steps = None if solver.adaptive else cfg.steps  # log_likelihood checks it and the solver
    eps = check_eps(cfg.eps, sde)
    score = score_for(cfg.checkpoint, sde, data)

    x = data.sample(
        num, torch.Generator(device=device).manual_seed(seed), device=device, dtype=dtype
    )
    num = len(x)  # held-out data may hold fewer points
    probes = torch.Generator(device=device).manual_seed(seed + 1)
    logps, nfe, rejected, start = [], 0, 0, time.perf_counter()
    for i in range(0, num, batch_size):
        res = log_likelihood(
            sde,
            score,
            x[i : i + batch_size],
            eps=eps,
            solver=solver,
            steps=steps,
            trace=str(cfg.trace),
            n_probes=n_probes,
            probe=str(cfg.probe),
            generator=probes,
        )
        logps.append(res.logp)
        nfe, rejected = nfe + res.nfe, rejected + res.rejected
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    logp = torch.cat(logps).cpu().double()
    logp = logp + getattr(data, "log_det", 0.0)  # array data: in the data's units
    note = getattr(data, "likelihood_note", None)  # a latent checkpoint: the latent likelihood
    units = None if note else getattr(data, "to_data", None)
    x = units(x) if units else x
    dim = int(x[0].numel())
    nll = (-logp).numpy()
    bpd = bits_per_dim(logp, dim).numpy()
    nll_mean, nll_lo, nll_hi = mean_ci95(nll)
    bpd_mean, bpd_lo, bpd_hi = mean_ci95(bpd)
    metrics: dict[str, Any] = {
        "sde": type(sde).__name__,
        "solver": type(solver).__name__,
        "steps": steps,
        "trace": str(cfg.trace),
        "probe": str(cfg.probe) if cfg.trace == "hutchinson" else None,
        "n_probes": n_probes if cfg.trace == "hutchinson" else None,
        "eps": eps,
        "dim": dim,
        "num_samples": num,
        "batch_size": batch_size,
        "seed": seed,
        "device": str(device),
        "dtype": str(cfg.dtype),
        "nll_mean": nll_mean,
        "nll_ci95": [nll_lo, nll_hi],
        "bpd_mean": bpd_mean,
        "bpd_ci95": [bpd_lo, bpd_hi],
        "nfe": nfe,  # score evaluations, summed over the batches
        "rejected_steps": rejected,
        "wall_time_s": wall,
        "time_per_sample_s": wall / num,
    }
    if note:
        metrics.update(likelihood_space="latent", likelihood_note=note)
    arrays = {"x": x.cpu().numpy(), "logp": logp.numpy()}
    if hasattr(data, "marginal_log_prob"):  # a mixture: the exact log p_eps(x) is known
        exact = data.marginal_log_prob(x, eps, sde).cpu().double()
        err = (logp - exact).numpy()
        metrics.update(
            exact_nll_mean=float(-exact.mean()),
            error_mean=float(err.mean()),
            abs_error_mean=float(np.abs(err).mean()),
            abs_error_max=float(np.abs(err).max()),
        )
        arrays["exact_logp"] = exact.numpy()
    floats = [v for v in metrics.values() if isinstance(v, float)]
    floats += [v for k in ("nll_ci95", "bpd_ci95") for v in metrics[k]]
    if not all(math.isfinite(v) for v in floats):
        bad = int((~torch.isfinite(logp)).sum())
        raise FloatingPointError(f"non-finite log-likelihoods ({bad} of {num} samples)")

    atomic_write_npz(out_dir / "logp.npz", **arrays)
    atomic_write_json(out_dir / "metrics.json", metrics)
    log.info(
        "%s + %s (%s trace): NLL = %.4f nats [%.4f, %.4f], %.4f bits/dim [%.4f, %.4f], "
        "nfe=%d, %.3g s/sample%s",
        metrics["sde"],
        metrics["solver"],
        metrics["trace"],
        nll_mean,
        nll_lo,
        nll_hi,
        bpd_mean,
        bpd_lo,
        bpd_hi,
        nfe,
        wall / num,
        f"; exact NLL {metrics['exact_nll_mean']:.4f}, mean |error| {metrics['abs_error_mean']:.2e}"
        if "exact_nll_mean" in metrics
        else "",
    )
    return metrics


def _context(cfg: DictConfig) -> dict[str, Any]:
    """What a failure record (``failure.json``) says about the run."""
    name = lambda node: str(node.get("_target_", "?")).rsplit(".", 1)[-1]  # noqa: E731
    return {"sde": name(cfg.sde), "solver": name(cfg.solver), "trace": cfg.get("trace")}


@hydra.main(config_path="pkg://sde_diffusion.conf", config_name="likelihood", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    out_dir = Path(hc.runtime.output_dir)
    overwrite, multirun = cfg.get("overwrite", False), hc.mode == RunMode.MULTIRUN
    explicit = explicit_data(hc.overrides.task)
    job = lambda: run(cfg, out_dir, explicit)  # noqa: E731
    run_in_dir(job, out_dir, OUTPUTS, overwrite, _context(cfg), multirun)


def main() -> None:
    """Console entry point of ``sde-likelihood``."""
    precheck(sys.argv[1:], "likelihood.yaml", ("sde", "solver", "data"), __doc__)
    _hydra_main()


if __name__ == "__main__":
    main()
