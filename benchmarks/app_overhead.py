"""How much time do the apps add per run, beyond the score evaluations?

    python benchmarks/app_overhead.py

(1) ``sde-compare``: for each run, job time (build, sample, metrics, table) minus sampling wall
time. (2) ``sde-sample -m`` (Hydra multirun, basic launcher, figure=false): the extra time per
job, from the slope of total time against the number of jobs, minus the sampling wall time.
Prints medians; the README quotes them with the machine.
"""

from __future__ import annotations

import json
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from sde_diffusion.results import read_csv


def compare_overhead(tmp: Path) -> list[float]:
    out = tmp / "cmp"
    subprocess.run(
        [
            shutil.which("sde-compare"),
            "solvers=[euler_maruyama,ode_heun,ode_rk4]",
            "steps=[10,20,50,100]",
            "num_samples=10000",
            "progress=false",
            "threads=1",
            f"hydra.run.dir={out}",
        ],
        check=True,
        capture_output=True,
    )
    rows = read_csv(out / "results.csv")
    return [r["job_time_s"] - r["wall_time_s"] for r in rows]


def multirun_total(tmp: Path, steps: list[int]) -> tuple[float, float]:
    sweep = tmp / f"sweep{len(steps)}"
    t0 = time.perf_counter()
    subprocess.run(
        [
            shutil.which("sde-sample"),
            "-m",
            f"steps={','.join(map(str, steps))}",
            "num_samples=10000",
            "figure=false",
            "progress=false",
            "threads=1",
            f"hydra.sweep.dir={sweep}",
        ],
        check=True,
        capture_output=True,
    )
    total = time.perf_counter() - t0
    walls = [json.loads(p.read_text())["wall_time_s"] for p in sweep.glob("*/metrics.json")]
    return total, sum(walls)


def main() -> None:
    print(f"# machine: {platform.machine()}, {platform.processor() or '?'}; torch threads=1")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        over = compare_overhead(tmp)
        print(
            f"sde-compare: {len(over)} runs, overhead per run median {statistics.median(over):.3f} s"
            f" (max {max(over):.3f} s)"
        )
        t1, w1 = multirun_total(tmp, [50])
        t9, w9 = multirun_total(tmp, [50] * 9)
        per_job = ((t9 - w9) - (t1 - w1)) / 8
        print(
            f"sde-sample -m: 1 job {t1:.2f} s, 9 jobs {t9:.2f} s (sampling {w9:.2f} s); "
            f"overhead per extra job {per_job:.3f} s; process start-up ~{t1 - w1:.2f} s"
        )


if __name__ == "__main__":
    main()
