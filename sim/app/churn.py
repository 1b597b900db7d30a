"""``vmsim fit-mix``: a built-in churn workload on the allocator core, for its fit-type mix."""

from __future__ import annotations

import numpy as np

from sim.schema.errors import InputError
from sim.workloads.churn import CHURN_KINDS, ChurnResult, run_churn


def fit_mix(workload: str, live: int, steps: int, search: str, seed: int) -> ChurnResult:
    """Run churn ``workload`` (one of CHURN_KINDS) with ``live`` areas for ``steps`` steps,
    its random frees drawn from a Generator seeded with ``seed``."""
    if workload not in CHURN_KINDS:
        raise InputError("--workload", None, f"expected one of {', '.join(CHURN_KINDS)}, got {workload!r}")
    return run_churn(workload, live, steps, np.random.default_rng(seed), search=search)
