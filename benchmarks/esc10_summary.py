"""Summarise runs/<OUT>/<model>-<init>-fold<K>/version_0/metrics.json as a Markdown table.

.venv/bin/python benchmarks/esc10_summary.py runs/esc10_bench
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def main(root: str) -> None:
    acc: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    for path in sorted(Path(root).glob("*-fold*/version_0/metrics.json")):
        match = re.fullmatch(r"(.+)-(pretrained|random)-fold(\d+)", path.parent.parent.name)
        if match and "test/acc" in (metrics := json.loads(path.read_text())):
            acc[(match[1], match[2])][int(match[3])] = metrics["test/acc"]
    folds = sorted({f for runs in acc.values() for f in runs})
    print("| model | init | " + " | ".join(f"fold {f}" for f in folds) + " | mean ± std |")
    print("| --- | --- | " + " | ".join("---" for _ in folds) + " | --- |")
    for (model, init), runs in sorted(acc.items()):
        values = list(runs.values())
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        cells = " | ".join(f"{100 * runs[f]:.1f}" if f in runs else "–" for f in folds)
        print(
            f"| {model} | {init} | {cells} | {100 * statistics.mean(values):.1f} ± {100 * std:.1f} (n={len(values)}) |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/esc10_bench")
