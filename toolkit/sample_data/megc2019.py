"""A deterministic MEGC2019 composite sample: CASME II, SAMM and SMIC-HS corpora named after the real list.

What `generate_megc2019(out, config)` writes under `out`:

- `casme2/`, `samm/`, `smic/`: a generated corpus each, in its real layout with its planted
  truth (`mertk.sample_data.casme2`, `.samm`, `.smic`), whose clips carry names from the
  organisers' composite list (CASME II clips are renamed after listed clips of the same subject
  and 3-class label; clips without a listed match keep their generated names, outside the list);
- `combined_3class_gt.csv`: the real list restricted to the clips made, its lines byte for byte
  and in the list's order (no header, CRLF), so that selecting by it gives exactly those clips;
- `mertk_sample.json`: the parameters and per-corpus counts.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Callable

from mertk.corpora.casme2 import EMOTION_3CLASS as CASME2_3CLASS
from mertk.corpora.megc2019 import LIST_NAME, composite_key, load_composite_list
from mertk.sample_data import samm as samm_sample
from mertk.sample_data import smic as smic_sample
from mertk.sample_data.casme2 import INFO_NAME, Casme2SampleConfig, SamplePlan, generate_casme2, plan_corpus, write_file
from mertk.sample_data.folder import prepare_sample_folder

CORPORA = ("casme2", "samm", "smic")


@dataclass(frozen=True)
class Megc2019SampleConfig:
    seed: int = 0
    subjects: int = 3  # per corpus
    samples_per_subject: int = 4
    width: int = 256
    height: int = 192
    frames: int = 20

    def corpus_config(self, corpus: str) -> Casme2SampleConfig:
        base = {"casme2": Casme2SampleConfig(), "samm": samm_sample.SCALES["default"], "smic": smic_sample.SCALES["default"]}[corpus]
        width = round(self.height * 1.875) if corpus == "samm" else self.width  # SAMM's 2040x1088 aspect
        return replace(base, seed=self.seed, subjects=self.subjects, samples_per_subject=self.samples_per_subject, total_samples=None, width=width, height=self.height, frames=self.frames)

    @property
    def sample_count(self) -> int:
        return len(CORPORA) * self.subjects * self.samples_per_subject


SCALES = {"default": Megc2019SampleConfig()}


@dataclass
class Megc2019SampleSummary:
    out_dir: Path
    subjects: int
    samples: int
    frames: int
    bytes_written: int
    emotions: dict[str, int]
    listed: dict[str, int]  # clips per corpus that the restricted list names
    missing_labels: int
    unlisted_planted: int
    apex_not_in_sheet: int


def casme2_plan_named_after_list(config: Casme2SampleConfig) -> tuple[list, list[SamplePlan]]:
    """CASME II's plan with each 3-class clip renamed after an unused listed clip of its subject and
    label; clips that find none get a name the list does not have."""
    looks, plans = plan_corpus(config)
    listed: dict[tuple[str, str], list[str]] = {}
    for entry in load_composite_list():
        if entry.dataset == "casme2":
            listed.setdefault((entry.subject, entry.label), []).append(entry.clip)
    listed_names = {(subject, clip) for (subject, _), clips in listed.items() for clip in clips}
    renamed, used = [], set()
    for plan in plans:
        label = CASME2_3CLASS.get(plan.emotion)
        choices = [c for c in listed.get((plan.subject_folder, label), []) if (plan.subject_folder, c) not in used] if label else []
        if choices:
            plan = replace(plan, episode=choices[0])
        else:
            episode = plan.episode
            while (plan.subject_folder, episode) in listed_names | used:
                number = int(re.match(r"EP(\d+)", episode).group(1)) % 99 + 1
                episode = f"EP{number:02d}{episode[4:]}"
            plan = replace(plan, episode=episode)
        used.add((plan.subject_folder, plan.episode))
        renamed.append(plan)
    renamed.sort(key=lambda p: (p.subject, p.episode))
    return looks, renamed


def restricted_list(made: set[tuple[str, int, str]]) -> tuple[bytes, dict[str, int]]:
    """The shipped list's lines whose clip was made, byte for byte, in list order; and counts per corpus."""
    text = resources.files("mertk.corpora").joinpath("data", LIST_NAME).read_bytes()
    lines = text.split(b"\r\n")
    entries = load_composite_list()
    kept, counts = [], {}
    for entry in entries:
        if entry.key in made:
            kept.append(lines[entry.line - 1] + b"\r\n")
            counts[entry.dataset] = counts.get(entry.dataset, 0) + 1
    return b"".join(kept), counts


def generate_megc2019(
    out_dir: Path | str,
    config: Megc2019SampleConfig = SCALES["default"],
    progress: Callable[[int], None] | None = None,
    workers: int = 1,
) -> Megc2019SampleSummary:
    out_dir = Path(out_dir)
    prepare_sample_folder(out_dir, CORPORA + (LIST_NAME,), "MEGC2019")
    made: set[tuple[str, int, str]] = set()
    casme2_plan = casme2_plan_named_after_list(config.corpus_config("casme2"))
    samm_plan = samm_sample.plan_samm(config.corpus_config("samm"))
    smic_plan = smic_sample.plan_smic(config.corpus_config("smic"))
    made |= {composite_key("casme2", p.subject_folder, p.episode) for p in casme2_plan[1]}
    made |= {composite_key("samm", str(p.subject), p.episode) for p in samm_plan[1]}
    made |= {composite_key("smic", f"s{p.subject}", p.episode) for p in smic_plan[1]}
    summaries = {
        "casme2": generate_casme2(out_dir / "casme2", config.corpus_config("casme2"), progress, workers, plan=casme2_plan),
        "samm": samm_sample.generate_samm(out_dir / "samm", config.corpus_config("samm"), progress, workers, plan=samm_plan),
        "smic": smic_sample.generate_smic(out_dir / "smic", config.corpus_config("smic"), progress, workers, plan=smic_plan),
    }
    list_bytes, listed = restricted_list(made)
    total = write_file(out_dir / LIST_NAME, list_bytes)
    emotions: dict[str, int] = {}
    for corpus, summary in summaries.items():
        for emotion, count in summary.emotions.items():
            emotions[f"{corpus}/{emotion}"] = count
    casme2 = summaries["casme2"]
    result = Megc2019SampleSummary(
        out_dir=out_dir,
        subjects=sum(s.subjects for s in summaries.values()),
        samples=sum(s.samples for s in summaries.values()),
        frames=sum(s.frames for s in summaries.values()),
        bytes_written=total + sum(s.bytes_written for s in summaries.values()),
        emotions=emotions,
        listed=listed,
        missing_labels=sum(s.missing_labels for s in summaries.values()),
        unlisted_planted=sum(s.unlisted_planted for s in summaries.values()),
        apex_not_in_sheet=casme2.slash_apex + summaries["samm"].apex_not_in_sheet + summaries["smic"].apex_not_in_sheet,
    )
    info = {"generator": "mertk sample-data megc2019", "config": asdict(config), "listed": listed, "samples": result.samples, "corpora": list(CORPORA), "list": LIST_NAME}
    result.bytes_written += write_file(out_dir / INFO_NAME, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return result
