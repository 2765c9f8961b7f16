"""bundlezoo.engines.FinetuneLoader on a tiny UNet in a real SupervisedTrainer (one-iteration runs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Events

from bundlezoo.data.checks import InputDataError
from bundlezoo.engines import FinetuneLoader
from engine_setup import build_run, same, tiny_unet, weights


def pretrained(seed: int = 123) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = tiny_unet()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)  # far from any fresh initialisation
    return weights(net)


def start_weights(path: Path, **loader_kwargs) -> dict[str, torch.Tensor]:
    """Run one iteration with a FinetuneLoader first; return the network's weights just before the first step."""
    seen: dict[str, dict[str, torch.Tensor]] = {}

    def handlers(net, opt, sched, evaluator):
        return {"first": [FinetuneLoader(path, net, **loader_kwargs)]}

    run = build_run(handlers, max_epochs=1)
    run.trainer.state.epoch_length = 1
    run.trainer.add_event_handler(Events.ITERATION_STARTED(once=1), lambda _: seen.setdefault("w", weights(run.network)))
    run.trainer.run()
    assert not same(seen["w"], weights(run.network)), "the step changed nothing: the test would not see a reload"
    return seen["w"]


@pytest.mark.parametrize("wrap", ["model_key", "plain"])
def test_the_first_step_starts_from_the_pretrained_weights(tmp_path: Path, wrap: str) -> None:
    state = pretrained()
    path = tmp_path / "pre.pt"
    torch.save({"model": state} if wrap == "model_key" else state, path)
    assert same(start_weights(path), state)


def test_key_map_moves_a_prefixed_encoder_into_place_and_logs_counts(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    state = pretrained()
    path = tmp_path / "ssl.pt"
    # an SSL-style checkpoint: the weights under another prefix, plus a head the target does not have
    torch.save({"model": {**{f"swinViT.{k}": v for k, v in state.items()},
                          "contrastive_head.weight": torch.ones(3, 3)}}, path)
    with caplog.at_level("INFO"):
        got = start_weights(path, key_map={"swinViT.": ""}, min_loaded_fraction=1.0)
    assert same(got, state)
    line = next(r.getMessage() for r in caplog.records if "finetune from" in r.getMessage())
    assert f"loaded {len(state)}/{len(state)} tensors, 100.0%" in line and "unexpected 1" in line, line

    # the same with the head filtered out before mapping
    report = FinetuneLoader(path, tiny_unet(), key_map={"swinViT.": ""}, key_filter=r"^swinViT\.").load()
    assert report.unexpected == [] and report.loaded_fraction == 1.0


def test_a_key_map_prefix_matching_nothing_fails_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pre.pt"
    torch.save({"model": pretrained()}, path)
    net = tiny_unet()
    before = weights(net)
    with pytest.raises(InputDataError, match=r"pre\.pt: finetune key_map prefixes \['swinVit\.'\] match no key"):
        FinetuneLoader(path, net, key_map={"swinVit.": "backbone."}).load()
    assert same(weights(net), before)


def test_too_small_a_loaded_fraction_fails_and_loads_nothing(tmp_path: Path) -> None:
    state = pretrained()
    path = tmp_path / "other.pt"
    # names that do not fit (what strict=false used to load silently: nothing)
    torch.save({"model": {f"encoder.{k}": v for k, v in state.items()}}, path)
    net = tiny_unet()
    before = weights(net)
    with pytest.raises(InputDataError) as err:
        FinetuneLoader(path, net).load()
    message = str(err.value)
    assert message.startswith(f"{path}: finetune loaded 0/{len(state)} tensors, 0.0%"), message
    assert "below min_loaded_fraction 0.5" in message and "\n" not in message
    assert same(weights(net), before)


def test_fraction_counts_values_and_shape_mismatches(tmp_path: Path) -> None:
    target = tiny_unet()
    state = pretrained()
    last_conv = [k for k in state if k.endswith("weight") and state[k].dim() == 5][-1]
    state[last_conv] = torch.zeros((5, *state[last_conv].shape[1:]))  # another number of output channels
    path = tmp_path / "pre.pt"
    torch.save(state, path)
    total = sum(v.numel() for v in target.state_dict().values())
    expected = 1.0 - target.state_dict()[last_conv].numel() / total

    report = FinetuneLoader(path, target, min_loaded_fraction=0.0).load()
    assert report.shape_mismatched == [last_conv] and report.missing == []
    assert report.loaded_fraction == pytest.approx(expected)
    with pytest.raises(InputDataError, match="shape-mismatched 1"):
        FinetuneLoader(path, tiny_unet(), min_loaded_fraction=1.0).load()


def test_a_file_that_is_not_weights_only_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "pickled.pt"
    torch.save({"model": object.__new__(torch.nn.Identity)}, path)  # a module object, not a state dict
    with pytest.raises(InputDataError, match=r"pickled\.pt: cannot be loaded with torch\.load\(weights_only=True\)"):
        FinetuneLoader(path, tiny_unet()).load()
    with pytest.raises(InputDataError, match=r"missing\.pt: checkpoint file not found"):
        FinetuneLoader(tmp_path / "missing.pt", tiny_unet()).load()
