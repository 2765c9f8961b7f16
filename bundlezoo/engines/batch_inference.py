"""Batch inference that keeps going: one bad input is reported and skipped, the others are still segmented."""

from __future__ import annotations

import sys
import traceback
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import decollate_batch, list_data_collate
from monai.data.utils import create_file_basename

from ..data.checks import (InputDataError, OneLineError, check_image_header, one_line, one_line_error_in_chain,
                           set_debug)
from ..data.io import atomic_write_json
from ..data.locks import FolderLock

__all__ = ["BatchInference", "FAILURES_FILE"]

#: Written to the output folder by every run: the inputs that were not segmented and why ([] when none).
FAILURES_FILE = "failures.json"


class BatchInference:
    """Segment every image of a dataset one at a time; a bad one costs one line, not the batch.

    The run, in order:

    1. takes a lock on ``output_dir`` (a second run writing there is refused with one line);
    2. checks every input's header before any compute (:func:`~bundlezoo.data.checks.check_image_header`:
       readable, 3D, one channel, usable geometry);
    3. refuses inputs whose outputs would share one name (``a.nii`` and ``a.nii.gz`` both give ``a_seg``): both
       are reported, neither is written, since keeping either would depend on the listing order;
    4. loads the weights (a failure names the file and ends the run: no input can be segmented);
    5. segments the remaining inputs one by one (preprocessing, inferer, postprocessing, which writes the output
       atomically); an error in one input is reported and the run goes on;
    6. writes ``failures.json`` to ``output_dir`` (``[{"input", "problem"}]``, ``[]`` when all went well).

    Each failure is one line on stderr, ``InputDataError: <input>: <problem>`` (or ``InferenceError: ...`` for an
    error that is not about the input, e.g. out of memory); ``debug=True`` adds the traceback. With
    ``exit_on_failure`` the process exits with status 1 when any input failed, as a command-line run should.

    It plays the role of MONAI's ``SupervisedEvaluator`` in an inference config (the ``evaluator`` property), with the
    same components: ``dataset`` (data = the datalist, transform = the preprocessing), ``network``, ``inferer``,
    ``postprocessing``.

    Args:
        dataset: a MONAI ``Dataset`` whose ``data`` is ``[{image_key: path}, ...]``; indexing it preprocesses.
        network: the network the weights are loaded into.
        inferer: e.g. ``SlidingWindowInferer``.
        postprocessing: applied to each item's dictionary after inference; it writes the output (``SaveImaged``).
        model_file: the checkpoint (``torch.load(..., weights_only=True)``, the network under ``load_key`` or the
            network's state dict itself).
        output_dir: where ``postprocessing`` writes; the lock and ``failures.json`` go there too.
        device: where the network runs.
        amp: autocast on CUDA.
        output_postfix: ``SaveImaged``'s ``output_postfix``, used to name clashing outputs in messages.
        image_key, pred_key: dictionary keys of the input image and the prediction.
        load_key: key of the network's weights in the checkpoint.
        debug: print tracebacks as well as the one-line messages.
        exit_on_failure: exit the process with status 1 when anything failed (else return the summary).

    Example (inference.json)::

        "evaluator": {"_target_": "bundlezoo.engines.batch_inference.BatchInference", "dataset": "@dataset",
                      "network": "@network", "inferer": "@inferer", "postprocessing": "@postprocessing",
                      "model_file": "$@ckpt_dir + '/model.pt'", "output_dir": "@output_dir", "device": "@device"},
        "run": ["$@evaluator.run()"]
    """

    def __init__(
        self,
        dataset: Any,
        network: torch.nn.Module,
        inferer: Callable[..., Any],
        postprocessing: Callable[[dict], Any],
        model_file: str | Path,
        output_dir: str | Path,
        device: str | torch.device = "cpu",
        amp: bool = False,
        output_postfix: str = "seg",
        image_key: str = "image",
        pred_key: str = "pred",
        load_key: str = "model",
        debug: bool = False,
        exit_on_failure: bool = True,
    ) -> None:
        self.dataset = dataset
        self.network = network
        self.inferer = inferer
        self.postprocessing = postprocessing
        self.model_file = Path(model_file)
        self.output_dir = Path(output_dir)
        self.device = torch.device(device)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.output_postfix = output_postfix
        self.image_key = image_key
        self.pred_key = pred_key
        self.load_key = load_key
        self.debug = bool(debug)
        self.exit_on_failure = exit_on_failure
        set_debug(self.debug)

    def run(self) -> dict[str, Any]:
        """Run the batch; returns ``{"inputs", "written", "failures"}`` (or exits with status 1, see the class)."""
        try:
            with FolderLock(self.output_dir, wait=0, purpose="inference output"):
                summary = self._run()
        except OneLineError as e:  # nothing can be segmented (weights, output folder): one line, no traceback
            if self.debug:
                traceback.print_exc()
            print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
            if self.exit_on_failure:
                raise SystemExit(1) from None
            raise
        if summary["failures"] and self.exit_on_failure:
            raise SystemExit(1)
        return summary

    def _run(self) -> dict[str, Any]:
        items: Sequence[dict] = list(self.dataset.data)
        failures: list[dict[str, str]] = []

        def fail(index: int, err: BaseException) -> None:
            path = str(items[index][self.image_key])
            found = one_line_error_in_chain(err, InputDataError)
            if found is not None:
                line, problem = f"InputDataError: {found}", found.problem
            else:
                root = _root_cause(err)
                problem = f"{type(root).__name__}: {one_line(root)}"
                line = f"InferenceError: {path}: {problem}"
            if self.debug:
                traceback.print_exception(err)
            print(line, file=sys.stderr, flush=True)
            failures.append({"input": path, "problem": problem})

        todo = []
        for i, item in enumerate(items):
            try:
                check_image_header(item[self.image_key])
                todo.append(i)
            except InputDataError as e:
                fail(i, e)
        for names in self._clashes(items, todo).values():
            for i in names:
                others = ", ".join(Path(items[j][self.image_key]).name for j in names if j != i)
                stem = self._stem(items[i][self.image_key])
                fail(i, InputDataError(items[i][self.image_key],
                                       f"its output would have the same name ({stem}_{self.output_postfix}) as "
                                       f"that of {others}; neither is written, rename one of them"))
                todo.remove(i)
        if todo:
            self._load_weights()
        written = 0
        for n, i in enumerate(todo, 1):
            print(f"segmenting {items[i][self.image_key]} ({n}/{len(todo)})", flush=True)
            try:
                self._segment(i)
                written += 1
            except Exception as e:  # one input's failure must not cost the others
                fail(i, e)
        atomic_write_json(self.output_dir / FAILURES_FILE, failures)
        print(f"inference: {written} of {len(items)} inputs segmented into {self.output_dir}"
              + (f"; {len(failures)} failed, listed in {self.output_dir / FAILURES_FILE}" if failures else ""),
              file=sys.stderr if failures else sys.stdout, flush=True)
        return {"inputs": len(items), "written": written, "failures": failures}

    def _stem(self, path: str | Path) -> str:
        # MONAI's own naming rule, so the check matches what SaveImaged writes
        return Path(create_file_basename("", str(path), "", separate_folder=False, makedirs=False)).name

    def _clashes(self, items: Sequence[dict], todo: list[int]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = defaultdict(list)
        for i in todo:
            groups[self._stem(items[i][self.image_key]).casefold()].append(i)  # case-insensitive file systems too
        return {k: v for k, v in groups.items() if len(v) > 1}

    def _load_weights(self) -> None:
        from ignite.handlers import Checkpoint

        if not self.model_file.is_file():
            raise InputDataError(self.model_file, "model weights not found; train the bundle or download its weights")
        try:
            checkpoint = torch.load(self.model_file, map_location=self.device, weights_only=True)
            Checkpoint.load_objects(to_load={self.load_key: self.network}, checkpoint=checkpoint, strict=True)
        except Exception as e:
            msg = str(e)
            # torch's weights-only refusal is a paragraph of advice; its last part says what was found
            msg = msg[msg.index("WeightsUnpickler error:"):] if "WeightsUnpickler error:" in msg else msg
            raise InputDataError(self.model_file, f"cannot be loaded as this network's weights "
                                                  f"({type(e).__name__}: {one_line(msg, 250)})") from e
        self.network.eval()

    def _segment(self, index: int) -> None:
        batch = list_data_collate([self.dataset[index]])
        with torch.no_grad(), torch.autocast(self.device.type, enabled=self.amp):
            batch[self.pred_key] = self.inferer(batch[self.image_key].to(self.device), self.network)
        for item in decollate_batch(batch):
            self.postprocessing(item)


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception (MONAI wraps transform errors in RuntimeErrors that only name the transform)."""
    seen = {id(err)}
    while (nxt := err.__cause__ or err.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        err = nxt
    return err
