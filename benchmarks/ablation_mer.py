"""The MER ablation of the README: each expert alone, all three, all three without the alignment
loss, and the ORACLE row (held-out samples' coded AUs as inputs), means over seeds.

    .venv/bin/python benchmarks/ablation_mer.py UNIMER_DIR --work DIR [--seeds 0 1 2] [--epochs 30] [--threads 1]

UNIMER_DIR: e.g. `mertk sample-data casme2 --subjects 12 --samples-per-subject 10 --out C` then
`mertk build-unimer --casme2 C --out B` (B/unimer). Runs are kept under --work (a finished run is
not trained again); prints a Markdown table (UF1/UAR mean ± std over seeds, mean gate weights)
and writes it to WORK/ablation.md and WORK/ablation.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROWS = [  # (name, experts, overrides)
    ("structure alone", ["structure"], {}),
    ("texture alone", ["texture"], {}),
    ("semantics alone (motion, aligned)", ["semantics"], {}),
    ("semantics alone, no alignment", ["semantics"], {"align_weight": 0.0}),
    ("all three (motion semantics aligned)", ["structure", "texture", "semantics"], {}),
    ("all three, no alignment", ["structure", "texture", "semantics"], {"align_weight": 0.0}),
    ("all three, ORACLE: held-out coded AUs as input", ["structure", "texture", "semantics"], {"test_inputs": "oracle-au"}),
]


def run_dir(work: Path, name: str, overrides: dict, seed: int) -> Path:
    slug = name.split(" (")[0].split(",")[0].replace(" ", "-") + ("-noalign" if overrides.get("align_weight") == 0 else "") + ("-oracle" if overrides.get("test_inputs") else "")
    return work / f"{slug}-seed{seed}"


def figures(metrics: dict) -> dict:
    return {"uf1": metrics["pooled"]["uf1"], "uar": metrics["pooled"]["uar"], "gates": metrics["gate_weights"], "oracle": metrics["test_inputs"]["oracle"]}


def run_row(unimer: Path, work: Path, name: str, experts: list[str], overrides: dict, seed: int, epochs: int, batch_size: int, threads: int) -> dict:
    from mertk.training.mer import MerTrainConfig, train_mer

    config = MerTrainConfig(unimer_dir=unimer, out=run_dir(work, name, overrides, seed), experts=experts, epochs=epochs, batch_size=batch_size, seed=seed, device="cpu",
                            threads=threads, progress=False, cache_dir=work / "cache", **overrides)  # fmt: skip
    return figures(train_mer(config))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("unimer", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--table-only", action="store_true", help="Only tabulate the finished runs' metrics.json.")
    args = parser.parse_args()
    results = {}
    for name, experts, overrides in ROWS:
        runs = []
        for seed in args.seeds:
            if args.table_only:
                runs.append(figures(json.loads((run_dir(args.work, name, overrides, seed) / "metrics.json").read_text())))
                continue
            started = time.perf_counter()
            runs.append(run_row(args.unimer, args.work, name, experts, overrides, seed, args.epochs, args.batch_size, args.threads))
            print(f"{name} seed {seed}: UF1 {runs[-1]['uf1']:.4f} UAR {runs[-1]['uar']:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
        results[name] = runs
    lines = [
        f"| model (seeds {', '.join(map(str, args.seeds))}) | UF1 | UAR | gate structure / texture / semantics |",
        "|---|---|---|---|",
    ]
    for name, runs in results.items():
        def stat(key: str) -> str:
            values = [r[key] for r in runs]
            return f"{statistics.mean(values):.3f} ± {statistics.pstdev(values):.3f}"

        gates = [" / ".join(f"{statistics.mean(r['gates'][e] for r in runs):.2f}" if e in runs[0]["gates"] else "–" for e in ("structure", "texture", "semantics"))]
        mark = " **(ORACLE, not a result)**" if runs[0]["oracle"] else ""
        lines.append(f"| {name} | {stat('uf1')}{mark} | {stat('uar')}{mark} | {gates[0]} |")
    table = "\n".join(lines)
    print(table)
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "ablation.md").write_text(table + "\n")
    (args.work / "ablation.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
