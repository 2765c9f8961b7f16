"""Custom iteration logic and handlers shared by the bundles: finetuning, checkpoints and resume, early stop."""

from .checkpointing import BestModelSaver, RunCheckpoint
from .early_stop import StopAtMetricTarget
from .finetune import FinetuneLoader

__all__ = ["BestModelSaver", "FinetuneLoader", "RunCheckpoint", "StopAtMetricTarget"]
