"""Checks ``torchscript_export`` and ``onnx_export``: MONAI's own exporters on the declared network, each with a
round trip against the eager network.

The exporters run as ``python -m monai.bundle ckpt_export|onnx_export`` in a child process, as a user runs them
(bundle folder first on the path); the input shape is always passed explicitly (MONAI would otherwise read the
fixed metadata names ``image``/``pred``). Most of an export's time is importing MONAI, so the ONNX export runs in
the background beside the TorchScript one.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.verify_checks.base import (
    BundleContext,
    CheckFailed,
    CheckSkipped,
    last_error_line,
    one_line,
    subprocess_env,
)
from tools.verify_checks.network import eager_network, input_shape_and_dtype

#: Tolerances of the export round trips (float32 on CPU). TorchScript runs the same kernels as eager, ONNX
#: Runtime does not, hence the looser bound there.
TS_RTOL, TS_ATOL = 1e-4, 1e-5
ONNX_RTOL, ONNX_ATOL = 1e-3, 1e-4


def _start_bundle_cli(ctx: BundleContext, tag: str, args: Sequence[str]) -> None:
    """Start ``python -m monai.bundle ARGS`` in the background (cwd = workdir); :func:`_finish_bundle_cli`
    collects it."""
    log = open(ctx.workdir / f"{tag}.log", "w")  # a file, not a pipe: a chatty exporter cannot block on it
    proc = subprocess.Popen(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=ctx.workdir,
        env=subprocess_env(ctx.bundle_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ctx.cache[f"proc:{tag}"] = (proc, log)


def _finish_bundle_cli(ctx: BundleContext, tag: str, timeout: float = 900) -> tuple[int, str]:
    """Wait for the background command ``tag``; its exit status and output."""
    proc, log = ctx.cache.pop(f"proc:{tag}")
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = -9
    finally:
        log.close()
    output = (ctx.workdir / f"{tag}.log").read_text(errors="replace")
    return rc, output + (f"\nTimeoutError: {tag} took more than {timeout:.0f} s" if rc == -9 else "")


def stop_background(ctx: BundleContext) -> None:
    """Kill background commands a failed check left running (only this run's own children)."""
    for key in [k for k in ctx.cache if k.startswith("proc:")]:
        proc, log = ctx.cache.pop(key)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _flat(output: Any) -> list[Any]:
    """A forward pass's tensors in order (a tuple or dict output flattened, as the exporters flatten it)."""
    if isinstance(output, dict):
        return [t for v in output.values() for t in _flat(v)]
    if isinstance(output, (tuple, list)):
        return [t for v in output for t in _flat(v)]
    return [output]


def _compare(name: str, got: Any, want: Any, rtol: float, atol: float) -> str:
    import torch

    got, want = _flat(got), _flat(want)
    if len(got) != len(want):
        raise CheckFailed(f"{name} returns {len(got)} outputs, eager {len(want)}")
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        g = torch.as_tensor(g, dtype=w.dtype)
        label = f"{name} output {i}" if len(want) > 1 else f"{name} output"
        if g.shape != w.shape:
            raise CheckFailed(f"{label} shape {tuple(g.shape)} != eager {tuple(w.shape)}")
        err = (g - w).abs().max().item() if w.numel() else 0.0
        if not torch.allclose(g, w, rtol=rtol, atol=atol):
            raise CheckFailed(f"{label} differs from eager: max |diff| {err:.3g} (rtol={rtol}, atol={atol})")
        worst = max(worst, err)
    return f"max |diff| {worst:.2g}"


def _export_args(ctx: BundleContext, out: Path, ckpt: Path, key: str, shape: Sequence[int]) -> list[str]:
    decl = ctx.declaration
    args = [decl.network_id, "--filepath", str(out), "--ckpt_file", str(ckpt)]
    args += ["--meta_file", str(ctx.meta_file), "--config_file", str(ctx.config(decl.network_config))]
    args += ["--input_shape", "[" + ",".join(map(str, shape)) + "]"]
    return args + (["--key_in_ckpt", key] if key else [])


def check_torchscript_export(ctx: BundleContext) -> str:
    """``python -m monai.bundle ckpt_export`` converts the network as declared (``auto``: script, else trace at
    the input shape; ``script``: must script; ``trace``), then the loaded ``.ts`` matches the eager network on a
    random input."""
    import torch

    mode = ctx.declaration.torchscript
    if mode == "none":
        raise CheckSkipped("declared export#torchscript: none")
    net, ckpt, key, source = eager_network(ctx)
    shape, dtype = input_shape_and_dtype(ctx)
    out = ctx.workdir / "model.ts"
    if "onnx_export" in ctx.planned and ctx.declaration.onnx and "proc:onnx" not in ctx.cache:
        onnx_args = _export_args(ctx, ctx.workdir / "model.onnx", ckpt, key, shape)
        _start_bundle_cli(ctx, "onnx", ["onnx_export", *onnx_args])
    script_error = ""
    if mode in ("auto", "script"):
        # Scripting in-process takes well under a second; when it cannot work (SwinUNETR, ViTAutoEnc ...) this
        # spares a ckpt_export run that would only import MONAI to fail the same way.
        try:
            torch.jit.script(copy.deepcopy(net))
        except Exception as e:
            script_error = last_error_line(f"{type(e).__name__}: {e}")
        if not script_error:
            _start_bundle_cli(ctx, "ts", ["ckpt_export", *_export_args(ctx, out, ckpt, key, shape)])
            rc, output = _finish_bundle_cli(ctx, "ts")
            if rc != 0 or not out.is_file():
                script_error = last_error_line(output)
        if script_error and mode == "script":
            raise CheckFailed(f"declared export#torchscript: script, but scripting fails: {script_error}")
    how = "scripted"
    if mode == "trace" or script_error:
        trace_args = ["--use_trace", "True"]
        _start_bundle_cli(ctx, "ts_trace", ["ckpt_export", *_export_args(ctx, out, ckpt, key, shape), *trace_args])
        rc, output = _finish_bundle_cli(ctx, "ts_trace")
        if rc != 0 or not out.is_file():
            why = f"script: {script_error}; " if script_error else ""
            raise CheckFailed(f"ckpt_export failed: {why}trace: {last_error_line(output)}")
        how = f"traced at {list(shape)}" + (f" (script failed: {one_line(script_error, 80)})" if script_error else "")
    ts = torch.jit.load(str(out), map_location="cpu")
    ts.eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.no_grad():
        diff = _compare("TorchScript", ts(x), net(x), TS_RTOL, TS_ATOL)
    return f"{how}, {source}; round trip on {list(shape)}: {diff}"


def check_onnx_export(ctx: BundleContext) -> str:
    """``python -m monai.bundle onnx_export`` at the input shape, then (when onnxruntime is installed) the ONNX
    model's outputs match the eager network's on a random input."""
    import torch

    if not ctx.declaration.onnx:
        raise CheckSkipped("declared export#onnx: false")
    net, ckpt, key, source = eager_network(ctx)
    shape, dtype = input_shape_and_dtype(ctx)
    out = ctx.workdir / "model.onnx"
    if "proc:onnx" not in ctx.cache:  # not already started beside the TorchScript export
        _start_bundle_cli(ctx, "onnx", ["onnx_export", *_export_args(ctx, out, ckpt, key, shape)])
    rc, output = _finish_bundle_cli(ctx, "onnx")
    if rc != 0 or not out.is_file():
        raise CheckFailed(f"onnx_export failed: {last_error_line(output)}")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise CheckSkipped(f"exported ({source}); onnxruntime not installed, round trip not run") from e
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        diff = _compare("ONNX Runtime", got, net(x), ONNX_RTOL, ONNX_ATOL)
    return f"exported ({source}); onnxruntime round trip on {list(shape)}: {diff}"
