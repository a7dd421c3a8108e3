"""The benchmarks still run: tiny sizes, one run each, real ``xfer`` processes.

``bench/run_all.py --quick`` runs the whole suite (about a minute); the magic-wormhole
cases are skipped, with a printed note, when it is not installed (``pip install -e '.[bench]'``),
the browser case when Chromium or Playwright is missing, and the Redis cases (two relays
sharing rooms) when redis-server or the redis package is missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import bounded

BENCH = Path(__file__).resolve().parent.parent / "bench"
NAMES = (
    "throughput",
    "fixed-cost",
    "round-trip",
    "memory",
    "idle-connections",
    "rooms",
    "startup",
    "browser",
    "redis-throughput",
    "redis-idle",
)


def wormhole_installed() -> bool:
    """The suite's own answer (both tools, and both twist plugins importable), so the two agree."""
    sys.path.insert(0, str(BENCH))
    try:
        from common import wormhole_tools
    finally:
        sys.path.remove(str(BENCH))
    return wormhole_tools() is not None


def redis_missing() -> str | None:
    """The suite's own answer to whether its Redis cases can run (redis-server and the redis package)."""
    sys.path.insert(0, str(BENCH))
    try:
        from redis_relays import missing
    finally:
        sys.path.remove(str(BENCH))
    return missing()


def run_bench(script: str, *args: str, out: Path, timeout: float) -> tuple[dict, str]:
    """Run ``bench/SCRIPT ARGS --out OUT``; its report and what it printed, once it exited 0
    with no failure."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=bounded(timeout),
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert report["failures"] == []
    return report, proc.stdout


def test_suite_quick(tmp_path):
    out = tmp_path / "suite.json"
    report, printed = run_bench("run_all.py", "--quick", out=out, timeout=240)
    assert list(report["benchmarks"]) == list(NAMES)
    for name, result in report["benchmarks"].items():
        assert "error" not in result, (name, result.get("error"))
        if result.get("skipped"):  # the browser case (no Chromium or Playwright), the Redis ones (no redis-server)
            assert name == "browser" or (name.startswith("redis-") and redis_missing()), name
            continue
        assert result["headline"], name
        for label, value in result["headline"].items():
            assert value > 0, (name, label, value)
        for t in result["targets"]:
            # CPU per GB of a 1 MB run can be under a clock tick (10 ms): no ratio then
            cpu = t["target"].startswith("CPU per GB")
            assert t["measured"] is not None or not wormhole_installed() or cpu, (name, t)
    throughput = report["benchmarks"]["throughput"]
    for kind in ("xfer-relayed", "xfer-embedded", "raw-forwarder", "page-cache-write"):
        assert throughput["mb_s"][kind]["median"] > 0, kind
    for run in throughput["runs"]["xfer-relayed"]:  # the user-space part of each process's CPU
        assert set(run["user_s"]) == set(run["cpu_s"]) == {"sender", "relay", "receiver"}
        assert all(0 <= run["user_s"][role] <= run["cpu_s"][role] for role in run["cpu_s"]), run
    memory = report["benchmarks"]["memory"]["peak_rss_mb"]
    for rss in memory.values():
        for role in ("sender", "relay", "receiver"):
            assert rss[role] > 1, role  # MB from os.wait4, so never 0 for Python
    if wormhole_installed():
        assert throughput["mb_s"]["wormhole-relayed"]["median"] > 0
        assert throughput["mb_s"]["wormhole-direct"]["median"] > 0
    else:
        assert "magic-wormhole is not installed" in printed
    if not redis_missing():
        redis = report["benchmarks"]["redis-throughput"]
        assert redis["mb_s"]["cross-relay"]["median"] > 0 and redis["mb_s"]["one-relay"]["median"] > 0
        assert all(not run["lost_redis"] for run in redis["runs"]["cross-relay"])
        idle = report["benchmarks"]["redis-idle"]
        assert idle["errors"] == 0 and sum(idle["per_relay"]) == idle["connections"]


def test_transfer_script_smoke(tmp_path):
    out = tmp_path / "r.json"
    report, _ = run_bench("transfer.py", "--smoke", "--size", "1MB", out=out, timeout=120)
    summary = report["results"][0]["summary"]
    assert summary["xfer_mb_s"]["median"] > 0 and summary["raw_mb_s"]["median"] > 0
    for role in ("sender", "relay", "receiver"):
        assert summary["peak_rss_mb"][role]["max"] > 1, role


def test_cpu_per_gb_skips_runs_too_short_to_measure():
    """A --quick run can end inside one clock tick: its CPU time reads 0 and must not be divided by."""
    sys.path.insert(0, str(BENCH))
    try:
        from run_all import cpu_per_gb
    finally:
        sys.path.remove(str(BENCH))
    runs = {
        "raw-forwarder": [{"cpu_s": {"sender, forwarder and sink": 0.0}}],
        "xfer-relayed": [
            {"cpu_s": {"sender": 0.2, "relay": 0.1, "receiver": 0.3}},
            {"cpu_s": {"sender": 0.4, "relay": 0.1, "receiver": None}},
        ],
    }
    cpu = cpu_per_gb(runs, 10**8)
    assert "raw-forwarder" not in cpu
    assert cpu["xfer-relayed"] == {"sender": 2.0, "relay": 1.0, "receiver": 3.0, "total": 6.0}


def test_encryption_comparison_smoke(tmp_path):
    """bench/compare_encryption.py tiny: xfer 1.0 (taken from git) against this tree, each
    with its own relay; both targets measured."""
    out = tmp_path / "enc.json"
    report, _ = run_bench("compare_encryption.py", "--quick", out=out, timeout=120)
    for name in ("baseline", "now"):
        assert report["throughput"][name]["median_mb_s"] > 0
        assert report["fixed_cost"][name]["median_seconds"] > 0
    assert [t["measured"] is not None for t in report["targets"]] == [True, True]


@pytest.mark.parametrize("mib", [0, 200])
def test_a_childs_peak_memory_is_its_own_not_the_benchmarks(tmp_path, mib):
    """The method behind every peak-RSS figure, on children of known memory, spawned while this
    process holds 300 MiB (which ``wait4``'s ``ru_maxrss`` would have reported for both)."""
    sys.path.insert(0, str(BENCH))
    try:
        from common import Child
    finally:
        sys.path.remove(str(BENCH))
    ballast = bytearray(300 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])  # resident, not only reserved
    hold = f"import time; b = bytearray({mib} * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5)"
    child = Child("known", [sys.executable, "-c", hold], tmp_path)
    child.wait(time.monotonic() + bounded(30))
    del ballast
    assert child.rc == 0
    python_alone = 30  # MiB: an interpreter that imported nothing stays well under this
    assert mib * 1024 <= child.rss_kib < (mib + python_alone) * 1024
