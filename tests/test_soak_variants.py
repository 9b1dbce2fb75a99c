"""The soak (bench/soak.py) in small: per contract variant, random faults on 20 % of API and storage requests, a
fresh user dir (nothing learned yet). Every variant: 0 duplicate billable runs, 0 lost results, nothing failed."""

import pytest

from bench.soak import VARIANTS, soak_variant

REQUIRED = ["defaults", "idempotency ignored", "search refused", "search ignored",
            "idempotency ignored + search refused", "idempotency ignored + search ignored", "confirm 409",
            "no Retry-After", "create 202 + cancelled + error{}"]


@pytest.mark.parametrize("name", REQUIRED)
def test_soak_variant(name, monkeypatch):
    for var in ("RUNFLOW_USER_DIR", "RUNFLOW_API_URL", "RUNFLOW_API_KEY", "RUNFLOW_MAX_SPEND_PER_DAY"):
        monkeypatch.setenv(var, "")  # restored after the test; soak_variant sets its own
    assert name in VARIANTS
    r = soak_variant(name, runs=10, rate=0.2, concurrency=10, seed=11, run_seconds=0.2, settle=1.2)
    assert r["duplicate_runs"] == 0 and r["lost_results"] == 0 and r["bad"] == 0, r
    assert r["succeeded"] + r["stopped"] == r["runs"], r["error_samples"]
    assert r["stopped"] == 0, r  # every sandbox variant leaves a way to know (search, replay, or the fence)
