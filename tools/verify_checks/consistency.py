"""Check ``consistency``: the declared pairs of config ids resolve to the same thing (no drift between, e.g.,
train and inference).

A ``component`` pair (e.g. ``network_def`` of train.json and inference.json) compares the two definitions after
resolving ``@`` references and literal expressions, qualifying class names and filling unset arguments with the
class's defaults. A ``transforms`` pair compares what two transform lists do to the keys the second list uses
(rule in :func:`compare_transforms`).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
from enum import Enum
from pathlib import Path
from typing import Any

from tools.verify_checks.base import (
    BundleContext,
    CheckFailed,
    CheckSkipped,
    bundle_on_path,
    each_of,
    one_line,
    parser,
    summarise,
)
from tools.verify_checks.declaration import Pair

#: Transforms ignored when comparing transform lists (matched by class, subclasses included): they move or retype
#: tensors, crop to the foreground or precompute sampling indices, so they do not change the voxel values and
#: spacing the network sees. Inference may legitimately differ there (e.g. no foreground crop).
TRANSFORMS_IGNORED: frozenset[str] = frozenset(
    {
        "EnsureTyped",
        "ToTensord",
        "ToDeviced",
        "ToNumpyd",
        "CropForegroundd",
        "FgBgToIndicesd",
        "ClassesToIndicesd",
        "CopyItemsd",
        "DeleteItemsd",
        "SelectItemsd",
        "Identityd",
    }
)

#: Loaders (``LoadImaged`` and subclasses) are compared on these arguments only: the reader (NIfTI for training,
#: DICOM allowed at inference) and input validation may differ, channel handling and dtype may not.
LOADER_COMPARED_ARGS: tuple[str, ...] = ("ensure_channel_first", "dtype")

#: Dictionary-transform arguments that hold one value per key: projected onto the compared keys.
PER_KEY_ARGS: frozenset[str] = frozenset(
    {"mode", "padding_mode", "align_corners", "dtype", "meta_keys", "meta_key_postfix", "nearest_interp"}
)


def _qualified_target(target: str) -> str:
    """``UNet`` and ``monai.networks.nets.UNet`` name one class: compare the class's real module path."""
    try:
        obj = _locate(target)
    except Exception:
        return target
    return f"{obj.__module__}.{obj.__qualname__}" if obj is not None else target


def _locate(target: str) -> Any:
    from monai.bundle.config_item import ComponentLocator
    from monai.utils import optional_import

    if "." not in target:
        modname = ComponentLocator().get_component_module_name(target)
        if isinstance(modname, list):  # ambiguous short name: MONAI itself would refuse it
            return None
        if modname is None:
            return None
        target = f"{modname}.{target}"
    module, _, attr = target.rpartition(".")
    obj, ok = optional_import(module, name=attr)
    return obj if ok else None


def _plain(value: Any) -> Any:
    """Normalise a resolved config value: enums to their values, tuples to lists, ``$`` literals evaluated."""
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("$"):
        # "$[16, 32]" and [16, 32] are the same value; real expressions stay as text
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return _plain(ast.literal_eval(value[1:]))
    return value


def _normalise_component(cfg: Any) -> Any:
    """Config of a component with its class fully qualified and unset arguments filled with the class's
    defaults, so ``UNet(num_res_units=2)`` written out or left at the default compares equal."""
    if isinstance(cfg, list):
        return [_normalise_component(c) for c in cfg]
    if not isinstance(cfg, dict):
        return _plain(cfg)
    out = {k: _normalise_component(v) for k, v in cfg.items()}
    target = out.get("_target_")
    if isinstance(target, str):
        obj = None
        with contextlib.suppress(Exception):
            obj = _locate(target)
        out["_target_"] = _qualified_target(target)
        if obj is not None:
            with contextlib.suppress(TypeError, ValueError):
                for name, p in inspect.signature(obj).parameters.items():
                    if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is p.empty or name in out:
                        continue
                    default = _plain(p.default)
                    if default is None or isinstance(default, (str, int, float, bool, list)):
                        out[name] = default
    return out


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two normalised configs, as 'path: left != right'."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in list(a) + [k for k in b if k not in a]:
            sub = f"{path}#{k}" if path else str(k)
            if k not in a:
                out.append(f"{sub}: absent != {b[k]!r}")
            elif k not in b:
                out.append(f"{sub}: {a[k]!r} != absent")
            else:
                out += _diff(a[k], b[k], sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}#{i}")]
    return [] if a == b else [f"{path or '<value>'}: {a!r} != {b!r}"]


def _resolved_config(ctx: BundleContext, config: Path, id_: str) -> Any:
    """Config content of ``id_`` with ``@`` references replaced by the referenced content and expressions
    evaluated, without instantiating components (so no network, dataset or reader is built)."""
    from monai.bundle.config_item import ConfigItem

    def unwrap(x: Any) -> Any:
        # with instantiate=False the resolved content still holds ConfigItem wrappers: keep their config only
        if isinstance(x, ConfigItem):
            x = x.get_config()
        if isinstance(x, dict):
            return {k: unwrap(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [unwrap(v) for v in x]
        return x

    p = parser(ctx, config)
    if id_ not in p:
        raise CheckFailed(f"config id '{id_}' not found in {config.name}")
    try:
        # evaluated, so "$@hu_window[0]" compares by value: same text over different hyper-parameters is drift
        return unwrap(p.get_parsed_content(id_, instantiate=False, eval_expr=True))
    except Exception:
        # an expression that needs a built component: compare it as written
        # (on a fresh parser: the failed attempt may have cached half-resolved content)
        p = parser(ctx, config)
        return unwrap(p.get_parsed_content(id_, instantiate=False, eval_expr=False))


def _transform_list(ctx: BundleContext, config: Path, id_: str) -> list[Any]:
    """The list of transforms at ``id_``: the id may hold the list, or a Compose whose ``transforms`` is it."""
    content = _resolved_config(ctx, config, id_)
    if isinstance(content, dict) and "transforms" in content:
        content = content["transforms"]
    if not isinstance(content, list):
        raise CheckFailed(f"'{id_}' is not a list of transforms (got {one_line(repr(content), 80)}): cannot compare")
    return content


def _keys_of(t: dict) -> list[str]:
    keys = t.get("keys", [])
    return [keys] if isinstance(keys, str) else list(keys) if isinstance(keys, (list, tuple)) else []


def _class_names(target: str) -> set[str]:
    """Names of the class ``target`` and its bases (just the short name when it cannot be imported)."""
    obj = None
    with contextlib.suppress(Exception):
        obj = _locate(target)
    if isinstance(obj, type):
        return {c.__name__ for c in obj.__mro__}
    return {target.rsplit(".", 1)[-1]}


def _project(transforms: list[Any], keys: set[str]) -> list[Any]:
    """The part of a transform list that acts on ``keys``: transforms not touching them dropped, per-key
    arguments reduced to those keys' values, ignored transforms (:data:`TRANSFORMS_IGNORED`) dropped and loaders
    reduced to :data:`LOADER_COMPARED_ARGS`."""
    out: list[Any] = []
    for t in transforms:
        if not isinstance(t, dict) or "_target_" not in t:
            out.append(t)  # an expression: compared as written
            continue
        classes = _class_names(str(t["_target_"]))
        if classes & TRANSFORMS_IGNORED:
            continue
        t_keys = _keys_of(t)
        if "keys" in t:
            idx = [i for i, k in enumerate(t_keys) if k in keys]
            if not idx:
                continue  # label-only transform
        else:
            idx = []
        if "LoadImaged" in classes:
            p = {"_target_": "LoadImaged", **{a: t[a] for a in LOADER_COMPARED_ARGS if a in t}}
        else:
            p = {k: v for k, v in t.items() if k not in ("keys", "allow_missing_keys")}
        for arg in PER_KEY_ARGS & p.keys():
            v = p[arg]
            if isinstance(v, (list, tuple)) and len(v) == len(t_keys) and len(t_keys) > 0:
                picked = [v[i] for i in idx]
                p[arg] = picked[0] if len(picked) == 1 else picked
        if idx:
            p["keys"] = [t_keys[i] for i in idx]
        out.append(p)
    return out


def _names(transforms: list[Any]) -> list[str]:
    return [str(t.get("_target_", t)).rsplit(".", 1)[-1] if isinstance(t, dict) else str(t) for t in transforms]


def compare_component(ctx: BundleContext, pair: Pair, paths: tuple[Path, Path]) -> str:
    """The two component definitions of ``pair`` are equal after normalisation (see the module docstring)."""
    a, b = (_normalise_component(_resolved_config(ctx, p, i)) for p, i in zip(paths, pair.ids))
    diffs = _diff(a, b, pair.ids[0])
    if diffs:
        raise CheckFailed(f"{pair.label()}: differs: {summarise(diffs)}")
    target = str(a.get("_target_", "?")) if isinstance(a, dict) else "?"
    return f"{pair.ids[0]} identical ({target.rsplit('.', 1)[-1]})"


def compare_transforms(ctx: BundleContext, pair: Pair, paths: tuple[Path, Path]) -> str:
    """The two transform lists of ``pair`` do the same to the keys the second list uses.

    Rule: both lists are projected onto the keys the second one names (transforms not touching them dropped,
    per-key arguments such as ``mode`` reduced to those keys' values), transforms that do not change what the
    network sees are dropped (:data:`TRANSFORMS_IGNORED`: typing, device moves, foreground crop, sampling
    indices; loaders compared on :data:`LOADER_COMPARED_ARGS` only), and the remaining sequences must be equal,
    class and arguments (defaults filled in), in order. E.g. train ``train#deterministic_transforms`` against
    inference ``preprocessing`` compares what both do to the image; the random training transforms are not
    compared.
    """
    first, second = (_transform_list(ctx, p, i) for p, i in zip(paths, pair.ids))
    keys = {k for t in second if isinstance(t, dict) for k in _keys_of(t)}
    if not keys:
        raise CheckFailed(f"{pair.configs[1]}#{pair.ids[1]} names no keys: cannot tell which keys to compare")
    a = _normalise_component(_project(first, keys))
    b = _normalise_component(_project(second, keys))
    if len(a) != len(b):
        raise CheckFailed(f"{pair.label()}: drift on {sorted(keys)}: {_names(a)} != {_names(b)}")
    diffs = _diff(a, b, "transform")
    for i, (x, y) in enumerate(zip(a, b)):
        if isinstance(x, dict) and isinstance(y, dict) and x.get("_target_") != y.get("_target_"):
            diffs.insert(0, f"transform#{i}: {_names([x])[0]} != {_names([y])[0]}")
    if diffs:
        raise CheckFailed(f"{pair.label()}: drift on {sorted(keys)}: {summarise(diffs)}")
    return f"{len(a)} transforms on {sorted(keys)} identical: {', '.join(_names(a))}"


def check_consistency(ctx: BundleContext) -> str:
    """Every declared consistency pair holds; a pair whose configs are absent (and only a default names them)
    is left out, a declared config that is missing fails (see :meth:`BundleContext.config`)."""
    if not ctx.declaration.consistency:
        raise CheckSkipped("no consistency pairs declared")

    def check_pair(pair: Pair) -> str:
        try:
            paths = (ctx.config(pair.configs[0]), ctx.config(pair.configs[1]))
        except CheckSkipped as e:
            raise CheckSkipped(f"{pair.label()}: {e}") from None
        compare = compare_component if pair.kind == "component" else compare_transforms
        return compare(ctx, pair, paths)

    with bundle_on_path(ctx.bundle_dir):
        return each_of(ctx.declaration.consistency, check_pair)
