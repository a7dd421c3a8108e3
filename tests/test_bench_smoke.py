"""The transfer benchmark still runs: tiny sizes, one run each, real ``xfer`` processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import bounded

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "transfer.py"


def test_transfer_benchmark_smoke(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, timeout=bounded(180), check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert [r["size"] for r in report["results"]] == ["1MB", "3MB"]
    for result in report["results"]:
        assert len(result["runs"]) == 1 and len(result["raw_runs"]) == 1
        summary = result["summary"]
        assert summary["xfer_mb_s"]["median"] > 0
        assert summary["raw_mb_s"]["median"] > 0
        assert summary["ratio_to_raw"] > 0
        for role in ("sender", "relay", "receiver"):
            assert summary["peak_rss_mb"][role]["max"] > 1, role  # MB from os.wait4, so never 0 for Python
