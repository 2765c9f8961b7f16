"""bundlezoo.engines.BestModelSaver and RunCheckpoint in real MONAI engines on a tiny UNet (seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events

from bundlezoo.data.checks import InputDataError
from bundlezoo.data.locks import LockedError
from bundlezoo.engines import BestModelSaver, RunCheckpoint
from engine_setup import Run, build_run, same, weights


def checkpointed_run(ckpt_dir: Path, *, max_epochs: int = 2, metric_values=(0.5,), **kwargs) -> Run:
    """A run with the bundle's wiring: RunCheckpoint first, BestModelSaver on the evaluator."""
    def handlers(net, opt, sched, evaluator):
        return {"first": [RunCheckpoint(ckpt_dir, net, opt, lr_scheduler=sched, validator=evaluator, **kwargs)],
                "val": [BestModelSaver(ckpt_dir, net)]}

    return build_run(handlers, max_epochs=max_epochs, metric_values=metric_values)


def test_latest_checkpoint_loads_weights_only_with_everything_a_resume_needs(tmp_path: Path) -> None:
    run = checkpointed_run(tmp_path, max_epochs=2)
    run.trainer.run()
    latest = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert same(latest["model"], weights(run.network))
    assert latest["optimizer"]["state"], "no optimizer moments saved"
    assert latest["lr_scheduler"]["last_epoch"] == 2
    assert latest["trainer"]["epoch"] == 2 and latest["trainer"]["iteration"] == 4
    assert latest["validator"] == {"best_metric": 0.5, "best_metric_epoch": 1}
    rng = latest["rng"]
    assert set(rng) == {"python", "numpy", "torch", "cuda", "transforms"}
    # Compose, RandFlipd, RandGaussianNoised and the RandGaussianNoise inside it each keep a generator
    assert len(rng["transforms"]) == 4, len(rng["transforms"])
    model = torch.load(tmp_path / "model.pt", weights_only=True)
    assert model.keys() == latest["model"].keys()  # a plain state dict, what ckpt_export and CheckpointLoader read
    assert sorted(os.listdir(tmp_path)) == ["latest.pt", "model.pt"]


def test_resume_continues_bit_identically(tmp_path: Path) -> None:
    """Two epochs, a fresh process state (everything rebuilt and reseeded), resume to four: the same weights,
    optimizer and best model as four epochs in one go."""
    whole = checkpointed_run(tmp_path / "whole", max_epochs=4, metric_values=(0.3, 0.6, 0.4, 0.5))
    whole.trainer.run()

    first = checkpointed_run(tmp_path / "split", max_epochs=4, metric_values=(0.3, 0.6, 0.4, 0.5))
    first.trainer.state.max_epochs = 2  # "killed" after epoch 2: latest.pt is what survives
    first.trainer.run()
    assert torch.load(tmp_path / "split" / "latest.pt", weights_only=True)["trainer"]["epoch"] == 2

    second = checkpointed_run(tmp_path / "split", max_epochs=4, metric_values=(0.4, 0.5), resume=True)
    epochs: list[int] = []
    second.trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    second.trainer.run()
    assert epochs == [3, 4]
    assert same(weights(second.network), weights(whole.network)), "resumed weights differ from the uninterrupted run"
    a = torch.load(tmp_path / "whole" / "latest.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "latest.pt", weights_only=True)
    assert a["trainer"] == b["trainer"] and a["validator"] == b["validator"] == {"best_metric": 0.6,
                                                                                  "best_metric_epoch": 2}
    # model.pt is epoch 2's (best 0.6): the resumed run's epochs 3 and 4 (0.4, 0.5) did not replace it
    best = torch.load(tmp_path / "split" / "model.pt", weights_only=True)
    assert same(best, torch.load(tmp_path / "whole" / "model.pt", weights_only=True))


def test_best_model_is_replaced_only_on_improvement(tmp_path: Path) -> None:
    saved: list[int] = []
    run = checkpointed_run(tmp_path, max_epochs=4, metric_values=(0.2, 0.7, 0.5, 0.8))
    run.trainer.add_event_handler(Events.EPOCH_COMPLETED,
                                  lambda e: saved.append((tmp_path / "model.pt").stat().st_mtime_ns))
    run.trainer.run()
    assert saved[0] < saved[1] == saved[2] < saved[3], saved
    assert same(torch.load(tmp_path / "model.pt", weights_only=True), weights(run.network))


def test_a_crash_between_temp_write_and_replace_keeps_the_old_model(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run = checkpointed_run(tmp_path, max_epochs=1)
    run.trainer.run()
    old = (tmp_path / "model.pt").read_bytes()

    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith("model.pt"):
            raise KeyboardInterrupt("killed between the temporary write and the replace")
        real_replace(src, dst)

    again = checkpointed_run(tmp_path, max_epochs=2, metric_values=(0.9,), resume=True)
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        again.trainer.run()
    assert (tmp_path / "model.pt").read_bytes() == old
    torch.load(tmp_path / "model.pt", weights_only=True)
    assert sorted(os.listdir(tmp_path)) == ["latest.pt", "model.pt"]


def test_temporaries_left_by_a_killed_write_are_cleaned_at_start(tmp_path: Path) -> None:
    run = checkpointed_run(tmp_path, max_epochs=1)
    run.trainer.run()
    (tmp_path / ".model.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".latest.pt.def456.tmp").write_bytes(b"half a checkpoint")
    checkpointed_run(tmp_path, max_epochs=2, resume=True).trainer.run()
    assert sorted(os.listdir(tmp_path)) == ["latest.pt", "model.pt"]


def test_a_new_run_refuses_weights_it_did_not_write(tmp_path: Path) -> None:
    checkpointed_run(tmp_path, max_epochs=1).trainer.run()
    before = (tmp_path / "model.pt").read_bytes()

    with pytest.raises(InputDataError, match=r"model\.pt: exists and this run did not write it: pass --resume true"):
        checkpointed_run(tmp_path, max_epochs=1).trainer.run()
    assert (tmp_path / "model.pt").read_bytes() == before

    (tmp_path / "model.pt").unlink()  # a latest.pt alone (killed before its first validation) is protected too
    with pytest.raises(InputDataError, match=r"latest\.pt: exists and this run did not write it"):
        checkpointed_run(tmp_path, max_epochs=1).trainer.run()

    checkpointed_run(tmp_path, max_epochs=1, overwrite=True).trainer.run()
    assert (tmp_path / "model.pt").is_file()


def test_a_run_that_starts_from_the_saved_model_may_replace_it(tmp_path: Path) -> None:
    """MONAI Label's training (and finetuning in place) loads models/model.pt first, then writes it back."""
    checkpointed_run(tmp_path, max_epochs=1).trainer.run()
    saved = torch.load(tmp_path / "model.pt", weights_only=True)

    run = checkpointed_run(tmp_path, max_epochs=1)
    run.network.load_state_dict(saved)  # before the run, as MONAI Label's CheckpointLoader does at STARTED
    run.trainer.run()
    assert not same(torch.load(tmp_path / "model.pt", weights_only=True), saved)


def test_a_second_run_on_a_locked_folder_stops_with_one_line(tmp_path: Path) -> None:
    """Another process training into the same ckpt_dir holds its lock: this run refuses before writing anything."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bundlezoo.data.locks import FolderLock; "
         "FolderLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"{tmp_path}: in use by another run \(pid {holder.pid} "):
            checkpointed_run(tmp_path, max_epochs=1).trainer.run()
        assert not (tmp_path / "model.pt").exists() and not (tmp_path / "latest.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    run = checkpointed_run(tmp_path, max_epochs=1)  # the lock dies with its holder (even under kill -9)
    run.trainer.run()
    assert (tmp_path / "latest.pt").is_file()
    checkpointed_run(tmp_path, max_epochs=2, resume=True).trainer.run()  # released at the end of the first run
