"""bundlezoo.engines.StopAtMetricTarget in a real SupervisedTrainer with a ValidationHandler (tiny UNet)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bundlezoo.engines import RunCheckpoint, StopAtMetricTarget
from engine_setup import build_run

SCORES = (0.2, 0.9, 0.95, 0.97, 0.99)


@pytest.mark.parametrize("target, epochs", [(0.85, 2), (0.99, 5), (None, 5), (1.5, 5)])
def test_training_stops_after_the_first_validation_reaching_the_target(target: float | None, epochs: int) -> None:
    run = build_run(lambda net, opt, sched, ev: {"last": [StopAtMetricTarget(ev, target)]}, max_epochs=5,
                    metric_values=SCORES)
    run.trainer.run()
    assert run.trainer.state.epoch == epochs


def test_the_stopped_epoch_is_checkpointed(tmp_path: Path) -> None:
    """The stop comes at the end of the epoch: latest.pt still records it."""
    def handlers(net, opt, sched, ev):
        return {"first": [RunCheckpoint(tmp_path, net, opt, lr_scheduler=sched, validator=ev)],
                "last": [StopAtMetricTarget(ev, 0.85)]}

    build_run(handlers, max_epochs=5, metric_values=SCORES).trainer.run()
    latest = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert latest["trainer"]["epoch"] == 2 and latest["validator"]["best_metric"] == 0.9
