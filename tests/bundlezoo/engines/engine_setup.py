"""A tiny but real MONAI training setup for the engine-handler tests: UNet, Adam, step scheduler, random transforms,
shuffled loader, ``SupervisedTrainer`` + ``SupervisedEvaluator`` with a ``ValidationHandler`` every epoch.

The evaluator's key metric is scripted (one value per validation), so a test decides when the metric improves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ignite.metrics import Metric
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import LrScheduleHandler, ValidationHandler
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import Compose, RandFlipd, RandGaussianNoised
from monai.utils import set_determinism


class ScriptedMetric(Metric):
    """A key metric whose value at the n-th validation is ``values[n]`` (the last one repeats)."""

    def __init__(self, values: Sequence[float]) -> None:
        self.values = list(values)
        self.calls = 0
        super().__init__()

    def reset(self) -> None:
        pass

    def update(self, output: Any) -> None:
        pass

    def compute(self) -> float:
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


def tiny_unet() -> torch.nn.Module:
    return UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), num_res_units=0,
                norm="batch")


def _cases(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    return [{"image": torch.as_tensor(rng.normal(size=(1, 8, 8, 8)), dtype=torch.float32),
             "label": torch.as_tensor(rng.random((1, 8, 8, 8)) > 0.5, dtype=torch.float32)} for _ in range(n)]


@dataclass
class Run:
    """One built training run (call ``trainer.run()``)."""

    trainer: SupervisedTrainer
    evaluator: SupervisedEvaluator
    network: torch.nn.Module
    optimizer: torch.optim.Optimizer


def build_run(handlers: Callable[[torch.nn.Module, torch.optim.Optimizer, Any, SupervisedEvaluator], dict[str, list]],
              *, max_epochs: int = 2, metric_values: Sequence[float] = (0.5,), seed: int = 0) -> Run:
    """Build a seeded run; ``handlers(network, optimizer, scheduler, evaluator)`` returns extra handlers as
    ``{"first": [...], "last": [...], "val": [...]}`` (placed before / after LR step + validation, and on the evaluator)."""
    set_determinism(seed=seed)
    net = tiny_unet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    transform = Compose([RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
                         RandGaussianNoised(keys="image", prob=0.5, std=0.1)])
    train_loader = DataLoader(Dataset(_cases(4, seed), transform=transform), batch_size=2, shuffle=True)
    val_loader = DataLoader(Dataset(_cases(2, seed + 1)), batch_size=1)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=val_loader, network=net,
                                    key_val_metric={"val_score": ScriptedMetric(metric_values)})
    extra = handlers(net, opt, sched, evaluator)
    for h in extra.get("val", []):
        h.attach(evaluator)
    train_handlers = [*extra.get("first", []), LrScheduleHandler(sched, print_lr=False),
                      ValidationHandler(validator=evaluator, interval=1, epoch_level=True), *extra.get("last", [])]
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=train_loader,
                                network=net, optimizer=opt, loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
                                train_handlers=train_handlers)
    return Run(trainer, evaluator, net, opt)


def weights(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
