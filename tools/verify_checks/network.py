"""Check ``net_in_out`` and the network the exports share: the declared network, with the declared weights, run
on a fake input of the declared input format, gives the declared output format.

The formats are the ``network_data_format`` entries of metadata.json that the declaration names (``input``,
``output``), so a classifier's logits vector, a segmentation map or a pretraining network's tuple are each
checked against what the bundle says it returns. (MONAI's own ``verify_net_in_out`` reads the fixed names
``image`` and ``pred`` and only compares channels and dtype.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.verify_checks.base import BundleContext, CheckFailed, bundle_on_path, metadata, one_line, parser


def io_format(ctx: BundleContext, side: str) -> tuple[dict[str, Any], int]:
    """The ``network_data_format`` entry the declaration names for ``side`` ("inputs" or "outputs"), and its
    position among that side's entries (a network returning a tuple returns them in that order)."""
    name = ctx.declaration.input if side == "inputs" else ctx.declaration.output
    entries = metadata(ctx).get("network_data_format", {}).get(side, {})
    if name not in entries or not isinstance(entries[name], dict):
        field = "input" if side == "inputs" else "output"
        raise CheckFailed(
            f"metadata.json network_data_format#{side} has no tensor '{name}' (the declared verify#{field}; "
            f"has {', '.join(entries) or 'none'})"
        )
    return entries[name], list(entries).index(name)


def input_shape_and_dtype(ctx: BundleContext) -> tuple[tuple[int, ...], Any]:
    """Batch shape and dtype of the fake input: the declared ``export#input_shape``, else batch 1 and the input
    format's channels and spatial shape (``"16*n"`` patterns with ``n = p = 1``, as MONAI's exporters do)."""
    import torch
    from monai.bundle.scripts import _get_fake_spatial_shape  # MONAI's own reading of "16*n", "2**p", "*"
    from monai.utils import get_equivalent_dtype

    fmt, _ = io_format(ctx, "inputs")
    dtype = get_equivalent_dtype(fmt.get("dtype", "float32"), torch.Tensor)
    if not dtype.is_floating_point or dtype == torch.float16:  # fp16 runs on CUDA only; exports run on CPU
        dtype = torch.float32
    if ctx.declaration.input_shape is not None:
        return ctx.declaration.input_shape, dtype
    try:
        spatial = _get_fake_spatial_shape(fmt["spatial_shape"])
        return (1, int(fmt["num_channels"]), *spatial), dtype
    except (KeyError, ValueError, TypeError) as e:
        raise CheckFailed(f"cannot build an input from network_data_format: {one_line(str(e), 120)}") from e


def checkpoint_key(state: Any) -> tuple[str, Any]:
    """Key of the weights inside a checkpoint ("" when flat) and the weights: MONAI's ``CheckpointSaver`` writes
    ``{"model": state_dict, ...}``."""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        return "model", state["model"]
    return "", state


def eager_network(ctx: BundleContext) -> tuple[Any, Path, str, str]:
    """The declared network in eval mode with the declared weights, the checkpoint they come from, their key in
    it ("" when flat) and a note on their origin. Built once per run and shared by the checks.

    The declared ``model`` is loaded (read only, ``weights_only=True``) when present; otherwise the seeded
    freshly initialised network is saved to the workdir, so an untrained bundle can still prove it exports.
    """
    import torch

    if "eager" in ctx.cache:
        return ctx.cache["eager"]
    decl = ctx.declaration
    config = ctx.config(decl.network_config)
    with bundle_on_path(ctx.bundle_dir):
        torch.manual_seed(0)
        p = parser(ctx, config)
        if decl.network_id not in p:
            raise CheckFailed(f"config id '{decl.network_id}' not found in {decl.network_config} (verify#network)")
        net = p.get_parsed_content(decl.network_id)
    ckpt = ctx.bundle_dir / decl.model if decl.model else None
    if ckpt is not None and ckpt.is_file():
        key, state = checkpoint_key(torch.load(ckpt, map_location="cpu", weights_only=True))
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise CheckFailed(f"{decl.model} does not fit {decl.network_id}: {one_line(str(e), 160)}") from e
        source = decl.model
    else:
        key, ckpt = "", ctx.workdir / "init_model.pt"
        torch.save(net.state_dict(), ckpt)
        source = f"freshly initialised weights (no {decl.model})" if decl.model else "freshly initialised weights"
    net.eval()
    ctx.cache["eager"] = (net, ckpt, key, source)
    return ctx.cache["eager"]


def select_output(ctx: BundleContext, output: Any) -> Any:
    """The declared output of a forward pass: the tensor itself, or the entry of a tuple (by its position among
    the declared outputs) or of a dict (by name)."""
    name = ctx.declaration.output
    if isinstance(output, dict):
        if name not in output:
            raise CheckFailed(f"network returned a dict without '{name}' (has {', '.join(map(str, output))})")
        return output[name]
    if isinstance(output, (tuple, list)):
        _, index = io_format(ctx, "outputs")
        if index >= len(output):
            raise CheckFailed(f"network returned {len(output)} outputs; '{name}' is declared at position {index}")
        return output[index]
    return output


def check_net_in_out(ctx: BundleContext) -> str:
    """The declared network, with its weights, maps a random input of the declared input format to an output
    with the declared output format: channels (dim 1), dtype, and rank (batch, channels, then one dim per entry
    of the output's ``spatial_shape``: none for a class-score vector)."""
    import torch
    from monai.utils import get_equivalent_dtype

    net, _, _, source = eager_network(ctx)
    shape, dtype = input_shape_and_dtype(ctx)
    out_fmt, _ = io_format(ctx, "outputs")
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=dtype).to(ctx.device)
    with torch.no_grad():
        y = select_output(ctx, net.to(ctx.device)(x))
    net.to("cpu")
    if not isinstance(y, torch.Tensor):
        raise CheckFailed(f"output '{ctx.declaration.output}' is a {type(y).__name__}, not a tensor")
    problems = []
    want_rank = 2 + len(out_fmt.get("spatial_shape", []))
    if y.ndim != want_rank:
        spatial = out_fmt.get("spatial_shape")
        problems.append(f"rank {y.ndim} != {want_rank} (batch, channels + spatial_shape {spatial})")
    if y.ndim < 2 or y.shape[1] != out_fmt.get("num_channels"):
        problems.append(f"channels {tuple(y.shape)[1:2]} != num_channels {out_fmt.get('num_channels')}")
    want_dtype = get_equivalent_dtype(out_fmt.get("dtype", "float32"), torch.Tensor)
    if y.dtype != want_dtype:
        problems.append(f"dtype {y.dtype} != {want_dtype}")
    if problems:
        raise CheckFailed(
            f"{ctx.declaration.network_id} on {list(shape)} gives output '{ctx.declaration.output}' of shape "
            f"{list(y.shape)}: " + "; ".join(problems)
        )
    return (
        f"{ctx.declaration.network_id} ({source}): input '{ctx.declaration.input}' {list(shape)} {dtype} -> "
        f"output '{ctx.declaration.output}' {list(y.shape)} {y.dtype}"
    )
