"""migrate-labels at scale: a shard-layout --target, faiss neighbours in the manifest, and the same
bytes from `--executor ray` (a local Ray, 2 workers) as from `--executor local`, resumed or not."""
from __future__ import annotations

import contextlib
import hashlib
import json
import pickle
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mertk.cli.app import app
from mertk.errors import RunError
from mertk.migration.config import NEIGHBOURS_FOLDER, MigrationConfig
from mertk.migration.neighbours import RECALL_GOAL
from mertk.pipelines import label_migration
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


def recording_index_files(monkeypatch, seen: list, damage: str | None = None) -> None:
    """The pipeline's index_files, recording what the shards were given (and, with `damage`, flipping
    one byte of that modality's index file once it is written)."""
    real = label_migration.index_files

    @contextlib.contextmanager
    def recorded(context, folder, shared=True):
        with real(context, folder, shared) as given:
            files = sorted(p.name for p in Path(folder).glob("*")) if Path(folder).is_dir() else []
            seen.append({"folder": Path(folder), "shared": shared, "files": files, "indexes": given.indexes,
                         "pickled": len(pickle.dumps(given.indexes))})
            if damage is not None:
                path = Path(given.indexes[damage].path)
                data = bytearray(path.read_bytes())
                data[-100] ^= 0xFF
                path.write_bytes(bytes(data))
            yield given

    monkeypatch.setattr(label_migration, "index_files", recorded)


def test_ray_with_two_workers_writes_the_bytes_of_local_and_resumes_to_them(corpora, local_ray, tmp_path, monkeypatch):
    bank, target = corpora
    seen: list = []
    recording_index_files(monkeypatch, seen)
    local = migrate_labels(bank, tmp_path / "local", config(target), progress=False)
    remote = migrate_labels(bank, tmp_path / "ray", config(target, executor="ray", workers=2), progress=False)
    local_target, ray_target = tmp_path / "local" / TARGET_FOLDER, tmp_path / "ray" / TARGET_FOLDER
    # local, one process: the indexes stay in memory; Ray: written once, the workers map the files
    assert not seen[0]["shared"] and all(i.path is None for i in seen[0]["indexes"].values())
    assert seen[1]["shared"] and seen[1]["folder"] == ray_target / NEIGHBOURS_FOLDER
    assert seen[1]["files"] == ["audio.faiss", "visual.faiss"]
    assert all(i.serialized is None and Path(i.path).parent == seen[1]["folder"] for i in seen[1]["indexes"].values())
    assert seen[1]["pickled"] < 2000 < sum(i.serialized.nbytes for i in seen[0]["indexes"].values())
    assert not (ray_target / NEIGHBOURS_FOLDER).exists()  # removed with the run: the folder holds what it did before
    # a local process pool maps the same files
    migrate_labels(bank, tmp_path / "pool", config(target, workers=2), progress=False)
    assert seen[2]["shared"] and seen[2]["files"] == ["audio.faiss", "visual.faiss"]
    assert digests(tmp_path / "pool" / TARGET_FOLDER) == digests(local_target)
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


def test_a_damaged_index_file_stops_the_ray_run_in_one_line_and_the_run_resumes(corpora, local_ray, tmp_path, monkeypatch):
    bank, target = corpora
    migrate_labels(bank, tmp_path / "local", config(target), progress=False)
    ray_config = config(target, executor="ray", workers=2)
    index_file = tmp_path / "ray" / TARGET_FOLDER / NEIGHBOURS_FOLDER / "audio.faiss"
    with monkeypatch.context() as patch:
        recording_index_files(patch, [], damage="audio")
        with pytest.raises(RunError) as raised:
            migrate_labels(bank, tmp_path / "ray", ray_config, progress=False)
    assert str(raised.value).startswith(f"{index_file}: damaged neighbour index file") and "\n" not in str(raised.value)
    assert not index_file.parent.exists()
    # an interrupted run's leftover (here: garbage) is simply written over by the next run
    index_file.parent.mkdir(parents=True)
    index_file.write_bytes(b"left by a killed driver")
    migrate_labels(bank, tmp_path / "ray", ray_config, progress=False)
    assert digests(tmp_path / "local" / TARGET_FOLDER) == digests(tmp_path / "ray" / TARGET_FOLDER)


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
