"""EAR's chain on sample corpora: pre-training corpus labelled by `--target` migration -> generator
-> LLP labelled by it -> parser. Prints the README's table (sample LLP test split, the 10 AVVP
numbers of each labelling) and the parser's 10 numbers trained on the labelling that is best on val.

    python benchmarks/generator_chain.py [--work DIR] [--videos 3600] [--llp sample_data/llp] [--seeds 0]

Every step is a `mertk` command (printed before it runs); outputs stay in --work, and a step
whose output is already there is not run again. The pre-training corpus is the sample generator
with `--seed 7`: its first val / test videos share filenames (and real timelines) with the sample
LLP's, so `train generator --exclude LLP` leaves them out.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

KEYS = ("audio", "visual", "audio_visual", "type", "event")


def mertk(*args: str, done: Path | None = None) -> None:
    if done is not None and done.exists():
        return
    command = [str(Path(sys.executable).with_name("mertk")), *args]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def scores_of(folder: Path) -> dict:
    manifest = json.loads((folder / "_manifest.json").read_text())
    return manifest["summary"]["scores"]


def row(name: str, scores: dict) -> str:
    cells = [f"{scores[level][key]:.1f}" for level in ("segment", "event") for key in KEYS]
    return f"| {name} | " + " | ".join(cells) + " |"


def row_spread(name: str, runs: list[dict]) -> str:
    """Mean ± sd over runs of the 10 numbers."""
    import statistics

    cells = []
    for level in ("segment", "event"):
        for key in KEYS:
            values = [run[level][key] for run in runs]
            spread = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
            cells.append(f"{statistics.mean(values):.1f}{spread}")
    return f"| {name} | " + " | ".join(cells) + " |"


def selection(scores: dict) -> float:
    """What picks the labels the parser trains on: the val mean of segment Type@AV and Event@AV."""
    return (scores["val"]["pseudo"]["segment"]["type"] + scores["val"]["pseudo"]["segment"]["event"]) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "mertk" / "generator_chain")
    parser.add_argument("--llp", type=Path, default=Path("sample_data/llp"))
    parser.add_argument("--videos", type=int, default=3600, help="pre-training corpus size (>= 10x the sample LLP's 320)")
    parser.add_argument("--seeds", default="0", help="comma-separated generator seeds (figures are their mean)")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--parser-seeds", default="0", help="comma-separated parser seeds (figures: mean ± sd)")
    parser.add_argument("--parser-epochs", default="30")
    parser.add_argument("--source", type=Path, help="folder of the real LLP CSVs, for mertk versions that do not ship them")
    arguments = parser.parse_args()
    work, llp = arguments.work, arguments.llp
    work.mkdir(parents=True, exist_ok=True)
    pre = work / "pretrain"
    torch_options = ["--device", "cpu", "--threads", arguments.threads]
    seeds = [int(s) for s in arguments.seeds.split(",")]

    source = ["--source", str(arguments.source)] if arguments.source else []
    mertk("sample-data", "llp", "--out", str(pre), "--seed", "7", "--videos", str(arguments.videos), *source, done=pre / "AVVP_train.csv")
    mertk("migrate-labels", "--llp", str(llp), "--out", str(work / "direct"), "--target", str(pre), done=work / "direct" / "avvp_pseudo" / "_manifest.json")
    labellings: dict[str, list[dict]] = {"direct migration (similarity)": [scores_of(work / "direct" / "avvp_pseudo")]}
    naive = labellings["direct migration (similarity)"][0]
    # The pre-training corpus's own weak labels migrated within it (its train split), for comparison.
    mertk("migrate-labels", "--llp", str(pre), "--out", str(work / "pretrain_own"), done=work / "pretrain_own" / "avvp_pseudo" / "_manifest.json")
    target_labels, own_labels = work / "direct" / "avvp_target", work / "pretrain_own" / "avvp_pseudo"
    if not target_labels.is_dir():  # mertk before the migration restructure wrote it inside avvp_pseudo/
        target_labels = work / "direct" / "avvp_pseudo" / "target"
    generators = {
        "--target labels": ("target", target_labels, []),
        "weak labels only (union)": ("weak-union", target_labels, ["--weak-only", "--weak-target", "union"]),
        "weak labels only (each)": ("weak-each", target_labels, ["--weak-only", "--weak-target", "each"]),
        "its own migrated labels": ("own", own_labels, []),
    }
    folders: dict[str, list[Path]] = {}
    for name, (short, label_dir, options) in generators.items():
        for seed in seeds:
            run = work / f"generator-{short}-{seed}"
            mertk("train", "generator", "--labels", str(label_dir), "--exclude", str(llp), "--out", str(run),
                  "--seed", str(seed), "--cache-dir", str(work / "cache"), *options, *torch_options, done=run / "metrics.json")  # fmt: skip
            for combine in ("generator", "mean"):
                out = work / f"labels-{run.name}-{combine}"
                mertk("migrate-labels", "--llp", str(llp), "--out", str(out), "--generator", str(run / "checkpoints" / "generator.safetensors"),
                      "--combine", combine, done=out / "avvp_pseudo" / "_manifest.json")  # fmt: skip
                key = f"generator pre-trained on {name}, combine {combine}"
                labellings.setdefault(key, []).append(scores_of(out / "avvp_pseudo"))
                folders.setdefault(key, []).append(out / "avvp_pseudo")

    print(f"\nsample LLP test split ({naive['test']['videos']} videos), pseudo-labels against the planted truth; generator figures: mean ± sd over generator seeds {seeds}\n")
    print("| labels | seg audio | seg visual | seg AV | seg Type@AV | seg Event@AV | event audio | event visual | event AV | event Type@AV | event Event@AV |")
    print("|---|" + "---|" * 10)
    print(row("naive (weak label on every segment)", naive["test"]["naive"]))
    for name, runs in labellings.items():
        print(row_spread(name, [r["test"]["pseudo"] for r in runs]))

    def best_of(names) -> str:
        return max(names, key=lambda name: sum(selection(r) for r in labellings[name]) / len(labellings[name]))

    best = best_of(labellings)
    best_target = best_of([name for name in labellings if "--target" in name])  # the chain as EAR runs it
    print(f"\nbest on val (mean of segment Type@AV and Event@AV): {best}; of the --target chain: {best_target}")
    print(f"\nparser (`train avvp`, {arguments.parser_epochs} epochs), test split, mean ± sd over seeds {arguments.parser_seeds}:")
    print("\n| parser trained on | seg audio | seg visual | seg AV | seg Type@AV | seg Event@AV | event audio | event visual | event AV | event Type@AV | event Event@AV |")
    print("|---|" + "---|" * 10)
    direct = "direct migration (similarity)"
    for name in dict.fromkeys([best, best_target, direct]):  # the best labels, and direct migration to compare with
        labels = work / "direct" / "avvp_pseudo" if name == direct else folders[name][0]
        results = []
        for seed in arguments.parser_seeds.split(","):
            run = work / f"parser-{labels.parent.name}-{arguments.parser_epochs}-{seed}"
            mertk("train", "avvp", "--llp", str(llp), "--labels", str(labels), "--out", str(run), "--cache-dir", str(work / "cache"),
                  "--epochs", arguments.parser_epochs, "--seed", seed, *torch_options, done=run / "metrics.json")  # fmt: skip
            results.append(json.loads((run / "metrics.json").read_text())["test"])
        print(row_spread(name, results))


if __name__ == "__main__":
    main()
