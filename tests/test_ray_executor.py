"""The Ray executor: same bytes as the local runner, lost workers lose nothing, errors keep their line."""
from __future__ import annotations

import functools
import hashlib
import os
import signal
import sys
from pathlib import Path

import pytest

from mertk.errors import InputError, RunError
from mertk.execution.sharded import run_sharded
from mertk.shards.manifest import Rejection, ShardResult
from mertk.shards.schema import load_schema

ray = pytest.importorskip("ray")
from mertk.execution.ray_executor import RayExecutor  # noqa: E402

PSEUDO = load_schema("avvp_pseudo_label", 1)
UNITS = list(range(1, 23))
DRIVER_PID = os.getpid()  # captured by value with the module: workers compare against it


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    # Workers import this module's functions by value: tests/ is not on their path.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield
    ray.shutdown()


def label_units(units: list[int], kill_on: int | None = None, marker: str | None = None, forever: bool = False) -> ShardResult:
    """Units divisible by 7 are rejected, the others give 20 rows each. With `kill_on`, the worker
    processing that unit dies (SIGKILL) the first time (`marker` records it), or every time until
    the marker file appears (`forever`)."""
    if kill_on in units and marker is not None:
        if os.getpid() == DRIVER_PID:  # never the test process itself, whatever Ray does
            raise RuntimeError("label_units ran in the driver, not in a Ray worker")
        if forever and not os.path.exists(marker):
            os.kill(os.getpid(), signal.SIGKILL)
        if not forever and not os.path.exists(marker):
            Path(marker).write_text("killed once")
            os.kill(os.getpid(), signal.SIGKILL)
    rows, written, rejected = [], [], []
    for unit in units:
        if unit % 7 == 0:
            rejected.append(Rejection(f"video{unit:06d}", "divisible by seven", f"feats/{unit}.npy"))
            continue
        written.append(f"video{unit:06d}")
        for modality in ("audio", "visual"):
            for segment in range(10):
                rows.append({
                    "filename": f"vid{unit:08d}_0_10", "video_id": f"vid{unit:08d}", "split": "target", "modality": modality,
                    "segment": segment, "labels": ["Speech"] if (unit + segment) % 3 == 0 else [],
                    "scores": [((unit * 31 + segment) % 97) / 97.0] * 25,
                })
    return ShardResult(PSEUDO.table_from_rows(rows), written, rejected)


def failing_units(units: list[int]) -> ShardResult:
    raise InputError(f"feats/{units[0]}.npy: shape (9, 128), expected (10, 128)")


def run(out: Path, process=label_units, executor=None):
    return run_sharded(
        out, PSEUDO, UNITS, process, command="mertk test", parameters={"k": 10}, shard_size=4, progress=False, executor=executor
    )


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_ray_writes_the_bytes_of_the_local_run(tmp_path):
    local = run(tmp_path / "local")
    with RayExecutor() as executor:
        remote = run(tmp_path / "ray", executor=executor)
    assert files(tmp_path / "local") == files(tmp_path / "ray")
    assert remote.inputs_written == local.inputs_written == 19 and remote.inputs_rejected == 3
    assert len(remote.shards) == 6


def test_a_killed_worker_is_replaced_and_nothing_is_lost(tmp_path):
    run(tmp_path / "local")
    marker = tmp_path / "killed"
    with RayExecutor() as executor:
        run(tmp_path / "ray", functools.partial(label_units, kill_on=9, marker=str(marker)), executor)
    assert marker.read_text() == "killed once"  # a worker did die mid-run
    assert files(tmp_path / "local") == files(tmp_path / "ray")


def test_a_run_stopped_by_lost_workers_resumes_to_the_same_bytes(tmp_path):
    run(tmp_path / "local")
    marker = tmp_path / "allow"
    dying = functools.partial(label_units, kill_on=17, marker=str(marker), forever=True)
    with pytest.raises(RunError, match=r"avvp_pseudo_label-00004.parquet: its Ray worker was lost 2 times.*run the same command again to resume"):
        with RayExecutor(retries=1) as executor:
            run(tmp_path / "ray", dying, executor)
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*.parquet")}
    assert "avvp_pseudo_label-00004.parquet" not in kept and "avvp_pseudo_label-00000.parquet" in kept
    marker.write_text("the node is back")
    with RayExecutor() as executor:
        run(tmp_path / "ray", dying, executor)
    assert files(tmp_path / "local") == files(tmp_path / "ray")
    # finished shards were not redone
    assert all((tmp_path / "ray" / name).stat().st_mtime_ns == mtime for name, mtime in kept.items())


def test_the_methods_own_error_reaches_the_driver_as_itself(tmp_path):
    with pytest.raises(InputError, match=r"feats/\d+\.npy: shape \(9, 128\), expected \(10, 128\)"):
        with RayExecutor() as executor:
            run(tmp_path / "ray", failing_units, executor)


def test_map_ordered_keeps_the_order(tmp_path):
    with RayExecutor() as executor:
        assert executor.map_ordered(functools.partial(pow, 2), list(range(12))) == [2**i for i in range(12)]
        assert "2 CPUs" in executor.describe()
