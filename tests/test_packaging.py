"""The wheel carries the library, the pipelines and the schemas; the console script runs."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_pipelines_and_schemas(tmp_path: Path):
    source = tmp_path / "src"
    # Build from a copy: a build inside the checkout would leave build/ behind for everyone else.
    skipped = shutil.ignore_patterns(".venv", ".git", "out", "build", "*.egg-info")
    # the top-level sample corpora and tests only: toolkit/sample_data is the package's own
    ignore = lambda folder, names: set(skipped(folder, names)) | ({"sample_data", "tests"} & set(names) if Path(folder) == REPO else set())  # noqa: E731
    shutil.copytree(REPO, source, ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path / "dist"), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("mertk-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in (REPO / "schemas").glob("*.json"):
        assert f"mertk/schemas/{schema.name}" in names
    assert "mertk/schemas/README.md" in names
    assert "mertk/pipelines/__init__.py" in names
    assert {"mertk/corpora/data/combined_3class_gt.csv", "mertk/corpora/data/SOURCE.md"} <= names  # the MEGC2019 list and its source
    assert "mertk/cli/app.py" in names and "mertk/shards/manifest.py" in names
    assert "mertk/sample_data/llp.py" in names and "mertk/sample_data/data/llp/AVVP_train.csv.gz" in names  # fresh clone: no ../shared
    assert not any(name.startswith(("toolkit/", "tests/")) for name in names)


def test_console_script_prints_version_and_help():
    mertk = Path(sys.executable).with_name("mertk")
    version = subprocess.run([str(mertk), "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("mertk ")
    help_text = subprocess.run([sys.executable, "-m", "mertk", "--help"], capture_output=True, text=True, check=True,
                               env={**os.environ, "COLUMNS": "200"})
    assert "validate" in help_text.stdout and "Uni-MER" in help_text.stdout
