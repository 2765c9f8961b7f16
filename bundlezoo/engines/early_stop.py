"""Stop training once a validation metric reaches a target (a demo or a budgeted run that needs "good enough")."""

from __future__ import annotations

import logging

from ignite.engine import Engine, Events

__all__ = ["StopAtMetricTarget"]

logger = logging.getLogger(__name__)


class StopAtMetricTarget:
    """Training handler: end the run after the first validation whose metric reaches ``target``.

    Put it after ``ValidationHandler`` in ``train#handlers``. The epoch ends normally (learning-rate step, checkpoints)
    and no further epoch starts. Under DDP every process must hold it: the validation metric is reduced over all
    processes, so they all stop after the same epoch.

    Args:
        validator: the evaluator the ``ValidationHandler`` runs.
        target: the metric value to reach; ``None`` turns the handler off.
        metric_name: the metric to watch; default the evaluator's key metric.
        higher_is_better: ``False`` for a metric to minimise (reached when ``value <= target``).
    """

    def __init__(self, validator: Engine, target: float | None = None, metric_name: str | None = None,
                 higher_is_better: bool = True) -> None:
        self.validator = validator
        self.target = target
        self.metric_name = metric_name
        self.higher_is_better = higher_is_better

    def attach(self, engine: Engine) -> None:
        """Watch the end of every training epoch (nothing when ``target`` is ``None``)."""
        if self.target is not None:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if self.validator.state.epoch != engine.state.epoch:
            return  # no validation in this epoch
        name = self.metric_name or self.validator.state.key_metric_name
        value = self.validator.state.metrics.get(name)
        if value is None:
            return
        reached = value >= self.target if self.higher_is_better else value <= self.target
        if reached:
            logger.info(f"stop: {name} {value:.4f} reached the target {self.target:g} at epoch "
                        f"{engine.state.epoch}/{engine.state.max_epochs}")
            engine.terminate()
