"""migrate-labels at scale: a shard-layout --target, faiss neighbours in the manifest, and the same
bytes from `--executor ray` (a local Ray, 2 workers) as from `--executor local`, resumed or not."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mertk.cli.app import app
from mertk.migration.config import MigrationConfig
from mertk.migration.neighbours import RECALL_GOAL
from mertk.pipelines.label_migration import OUTPUT_FOLDER, TARGET_FOLDER, migrate_labels
from mertk.sample_data.llp import make_sample_llp
from mertk.sample_data.llp_shards import ShardLayoutOptions, make_sample_llp_shards
from mertk.shards.layout import MANIFEST_NAME, STATE_DIR

ray = pytest.importorskip("ray")

SOURCE = Path(__file__).resolve().parents[1] / "sample_data" / "llp"  # committed annotation rows


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> tuple[Path, Path]:
    bank = tmp_path_factory.mktemp("bank")
    make_sample_llp(bank, seed=0, train=24, val=8, test=8, source=SOURCE, progress=False)
    target = tmp_path_factory.mktemp("target") / "corpus"
    options = ShardLayoutOptions(videos_per_shard=9, features="all", dtype="float32")
    make_sample_llp_shards(target, videos=30, seed=4, options=options, source=SOURCE, progress=False)
    return bank, target


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def digests(folder: Path, pattern: str = "**/*") -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob(pattern)) if p.is_file()
    }


def config(target: Path, **changes) -> MigrationConfig:
    return MigrationConfig(target=str(target), shard_videos=8, fit_videos=0, **changes)


def test_ray_with_two_workers_writes_the_bytes_of_local_and_resumes_to_them(corpora, local_ray, tmp_path):
    bank, target = corpora
    local = migrate_labels(bank, tmp_path / "local", config(target), progress=False)
    remote = migrate_labels(bank, tmp_path / "ray", config(target, executor="ray", workers=2), progress=False)
    local_target, ray_target = tmp_path / "local" / TARGET_FOLDER, tmp_path / "ray" / TARGET_FOLDER
    assert len(list(local_target.glob("*.parquet"))) == 4  # 30 videos in shards of 8
    assert digests(local_target) == digests(ray_target)  # shards, state files, manifest
    for name in ("*.parquet", MANIFEST_NAME):  # the labelling pass too
        assert digests(tmp_path / "local" / OUTPUT_FOLDER, name) == digests(tmp_path / "ray" / OUTPUT_FOLDER, name)
    assert local.target == remote.target and local.target["videos"] == 30
    neighbours = local.target["neighbours"]
    assert neighbours["audio"]["type"] == "IndexFlatIP" and neighbours["visual"]["recall_at_10"] == 1.0
    assert "knn" in local.target  # scored against the target's planted truth
    # an interrupted driver: two shards and the manifest lost; the same command resumes
    for lost in ("avvp_pseudo_label-00001.parquet", "avvp_pseudo_label-00003.parquet", MANIFEST_NAME):
        (ray_target / lost).unlink()
    kept = (ray_target / "avvp_pseudo_label-00000.parquet").stat().st_mtime_ns
    migrate_labels(bank, tmp_path / "ray", config(target, executor="ray", workers=2), progress=False)
    assert digests(local_target) == digests(ray_target)
    assert (ray_target / "avvp_pseudo_label-00000.parquet").stat().st_mtime_ns == kept


def test_hnsw_neighbours_are_tuned_measured_and_recorded(corpora, tmp_path):
    bank, target = corpora
    result = migrate_labels(bank, tmp_path / "hnsw", config(target, features="clip", neighbour_index="hnsw"), progress=False)
    manifest = json.loads((tmp_path / "hnsw" / TARGET_FOLDER / MANIFEST_NAME).read_text())
    assert manifest["parameters"]["neighbour_index"] == "hnsw"
    for modality in ("audio", "visual"):
        recorded = manifest["summary"]["neighbours"][modality]
        assert recorded["type"] == "IndexHNSWFlat" and recorded["efSearch"] >= 16
        assert recorded["recall_at_10"] >= RECALL_GOAL and 0 <= recorded["labels_changed_share"] <= 1
        assert recorded["sample_queries"] == 300  # every target segment: 30 videos (fewer than the sample size)
    assert result.target["neighbours"] == manifest["summary"]["neighbours"]


def test_cli_takes_executor_and_neighbour_index(corpora, tmp_path):
    bank, target = corpora
    result = CliRunner().invoke(
        app,
        ["migrate-labels", "--llp", str(bank), "--out", str(tmp_path / "o"), "--target", str(target),
         "--executor", "local", "--neighbour-index", "exact", "--fit-videos", "0"],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o" / TARGET_FOLDER / MANIFEST_NAME).is_file()
    assert not list((tmp_path / "o" / TARGET_FOLDER / STATE_DIR).glob("segments*"))  # no target cache: streamed
    result = CliRunner().invoke(app, ["migrate-labels", "--llp", str(bank), "--executor", "spark"])
    assert result.exit_code == 2
