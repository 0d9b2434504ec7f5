"""`mertk train dave`: train (toolkit.training.dave), then write RUN/_report.html (toolkit.training.dave_report)."""
from __future__ import annotations

from typing import Any, Callable

from mertk.training.dave_report import write_dave_report
from mertk.training.dave import DaveTrainConfig, train_dave


def run_train_dave(config: DaveTrainConfig, after_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """RUN/metrics.json, predictions.parquet + manifest, checkpoints/esg_net.safetensors, _report.html."""
    metrics = train_dave(config, after_step)
    write_dave_report(config.out, config.unav)
    return metrics
