"""mertk export: LLaVA and ShareGPT JSON that loads, with images on disk at the relative paths."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from cli_run import run_mertk
from mertk.cli.app import app
from mertk.export import ExportError, export_instructions
from mertk.pipelines.build_unimer import UnimerParameters, build_unimer

CORPUS = Path(__file__).resolve().parents[1] / "sample_data" / "casme2"


@pytest.fixture(scope="module")
def unimer_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("export_src")
    return build_unimer(CORPUS, out, UnimerParameters(), progress=False, report=False).out_dir


def _check_images(base: Path, paths: list[str]) -> None:
    for relative in paths:
        assert not Path(relative).is_absolute()
        image = cv2.imread(str(base / relative), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.shape[:2] == (112, 112)


def test_llava_layout(unimer_dir, tmp_path):
    summary = export_instructions(unimer_dir, tmp_path, "llava")
    records = json.loads((tmp_path / "unimer_llava.json").read_text())
    assert len(records) == summary.records == 24 and summary.images == 48
    record = records[0]
    assert set(record) == {"id", "image", "conversations"}
    assert [turn["from"] for turn in record["conversations"][:4]] == ["human", "gpt", "human", "gpt"]
    assert record["conversations"][0]["value"].startswith("<image><image>\n")
    assert sum(turn["value"].count("<image>") for turn in record["conversations"]) == len(record["image"]) == 2
    _check_images(tmp_path, record["image"])


def test_sharegpt_layout_and_dataset_info(unimer_dir, tmp_path):
    export_instructions(unimer_dir.parent, tmp_path, "sharegpt", images="apex")  # OUT works as well as OUT/unimer
    records = json.loads((tmp_path / "unimer_sharegpt.json").read_text())
    record = records[0]
    assert [m["role"] for m in record["messages"][:2]] == ["user", "assistant"]
    assert record["messages"][0]["content"].count("<image>") == len(record["images"]) == 1
    _check_images(tmp_path, record["images"])
    info = json.loads((tmp_path / "dataset_info.json").read_text())
    assert info["unimer"]["file_name"] == "unimer_sharegpt.json" and info["unimer"]["formatting"] == "sharegpt"
    assert info["unimer"]["columns"] == {"messages": "messages", "images": "images"}


def test_export_is_deterministic(unimer_dir, tmp_path):
    export_instructions(unimer_dir, tmp_path / "a", "llava")
    export_instructions(unimer_dir, tmp_path / "b", "llava")
    assert (tmp_path / "a" / "unimer_llava.json").read_bytes() == (tmp_path / "b" / "unimer_llava.json").read_bytes()


def test_bad_input(tmp_path, unimer_dir, monkeypatch, capsys):
    with pytest.raises(ExportError, match="no _manifest.json"):
        export_instructions(tmp_path, tmp_path / "x", "llava")
    with pytest.raises(ExportError, match="unknown export format 'alpaca'"):
        export_instructions(unimer_dir, tmp_path / "x", "alpaca")
    status, output = run_mertk(monkeypatch, capsys, "export", tmp_path, "--format", "llava", "--out", tmp_path / "x")
    assert status == 2 and "no _manifest.json" in output and "Traceback" not in output
