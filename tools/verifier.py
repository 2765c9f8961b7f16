"""Checks that a MONAI bundle of this collection is complete, consistent and exportable.

`tools/verify.py` is a thin command line over :func:`verify_bundle`; the packaging tool reuses
:func:`sha256_file` and :func:`read_large_files`. Heavy imports (torch, MONAI, onnxruntime) happen inside the
checks that need them, so importing this module for hashing stays cheap.

Every check takes a :class:`BundleContext` and either returns a one-line PASS message, or raises
:class:`CheckFailed` (FAIL) or :class:`CheckSkipped` (SKIP, does not fail the run). Any other exception is
reported as a FAIL with its type and first line, so one broken check never hides the others.

Nothing here writes inside the bundle: exports and checkpoints go to ``BundleContext.workdir``.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import hashlib
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Files every bundle must ship (model-zoo layout).
REQUIRED_FILES: tuple[str, ...] = (
    "LICENSE",
    "configs/metadata.json",
    "configs/inference.json",
    "configs/logging.conf",
    "docs/README.md",
    "docs/data_license.txt",
    "large_files.yml",
)

#: md5 of the MONAI metadata schemas we trust, by the file name in the metadata's ``schema`` URL. A schema is
#: only used (local copy or download) when its md5 matches, so a tampered or truncated copy can never pass.
PINNED_SCHEMA_MD5: dict[str, str] = {
    "meta_schema_20240725.json": "06954cad2cc5d3784e72077ac76f0fc8",
}

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"

#: Tolerances of the export round trips (float32 on CPU). TorchScript runs the same kernels as eager, ONNX
#: Runtime does not, hence the looser bound there.
TS_RTOL, TS_ATOL = 1e-4, 1e-5
ONNX_RTOL, ONNX_ATOL = 1e-3, 1e-4

#: Transforms ignored when comparing train and inference preprocessing (matched by class, subclasses included):
#: they move or retype tensors, crop to the foreground or precompute sampling indices, so they do not change the
#: voxel values and spacing the network sees. Inference may legitimately differ there (e.g. no foreground crop).
PREPROCESSING_IGNORED: frozenset[str] = frozenset(
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

#: Dictionary-transform arguments that hold one value per key: projected onto the image keys before comparing.
PER_KEY_ARGS: frozenset[str] = frozenset(
    {"mode", "padding_mode", "align_corners", "dtype", "meta_keys", "meta_key_postfix", "nearest_interp"}
)


class CheckFailed(Exception):
    """The bundle fails a check; the message is the one-line reason shown to the user."""


class CheckSkipped(Exception):
    """A check does not apply (e.g. no train config); the message says why. Does not fail the run."""


@dataclass
class CheckResult:
    """Outcome of one check on one bundle."""

    name: str
    status: str  # PASS, FAIL or SKIP
    message: str
    seconds: float = 0.0

    def line(self) -> str:
        """One printable line: status, check name, message."""
        return f"{self.status:4}  {self.name:<26} {self.message}"


@dataclass
class BundleContext:
    """What the checks need: the bundle, the schema to use, a scratch folder, and options."""

    bundle_dir: Path
    workdir: Path
    schema: Path | None = None
    device: str = "cpu"
    planned: frozenset[str] = frozenset()  # names of the checks this run will do
    _cache: dict[str, Any] = field(default_factory=dict)

    @property
    def configs(self) -> Path:
        """The bundle's configs folder."""
        return self.bundle_dir / "configs"

    @property
    def meta_file(self) -> Path:
        return self.configs / "metadata.json"

    @property
    def inference_file(self) -> Path:
        return self.configs / "inference.json"

    @property
    def train_file(self) -> Path:
        return self.configs / "train.json"

    @property
    def logging_file(self) -> Path:
        return self.configs / "logging.conf"


# ----------------------------------------------------------------------------------------------------- hashing
def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file, read in chunks so multi-GB weights do not load into memory.

    Args:
        path: file to hash.
        algorithm: any name :func:`hashlib.new` accepts (``sha256``, ``md5`` ...).
        chunk: read size in bytes.
    """
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file (the hash ``large_files.yml`` records)."""
    return file_digest(path, "sha256")


def read_large_files(bundle_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Entries of a bundle's ``large_files.yml`` (model-zoo format ``large_files: [{path, url, hash_val,
    hash_type}]``). An empty file or an empty list gives ``[]``.

    Raises:
        ValueError: the file is not in that format.
    """
    import yaml

    data = yaml.safe_load((Path(bundle_dir) / "large_files.yml").read_text())
    if data is None:
        return []
    if not isinstance(data, dict) or "large_files" not in data:
        raise ValueError("large_files.yml must be a mapping with a 'large_files' list")
    entries = data["large_files"] or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError("'large_files' must be a list of mappings {path, url, hash_val, hash_type}")
    return entries


# ------------------------------------------------------------------------------------------------ small helpers
def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckFailed(f"missing {path.name}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckFailed(f"{path.name} is not valid JSON: {e}") from e


def _metadata(ctx: BundleContext) -> dict[str, Any]:
    if "metadata" not in ctx._cache:
        meta = _load_json(ctx.meta_file)
        if not isinstance(meta, dict):
            raise CheckFailed("metadata.json must hold a JSON object")
        ctx._cache["metadata"] = meta
    return ctx._cache["metadata"]


def _need(path: Path, ctx: BundleContext) -> Path:
    if not path.is_file():
        raise CheckFailed(f"missing {path.relative_to(ctx.bundle_dir)}")
    return path


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _last_error_line(output: str) -> str:
    """The most informative line of a failed subprocess: the last 'XxxError: ...' line, else the last line."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if re.match(r"^[\w.]*(Error|Exception)\b", lines[i]):
            # TorchScript puts its reason on the line after a bare "RuntimeError:"
            text = lines[i] if not lines[i].endswith(":") or i + 1 == len(lines) else f"{lines[i]} {lines[i + 1]}"
            return _one_line(text)
    return _one_line(lines[-1]) if lines else "no output"


@contextlib.contextmanager
def _bundle_on_path(bundle_dir: Path) -> Iterator[None]:
    """Make the repo's ``bundlezoo`` and a bundle's own ``scripts`` importable while its configs are parsed, as
    ``python -m monai.bundle run`` does, and forget that bundle's ``scripts`` afterwards so the next bundle's
    ``scripts`` is not shadowed."""
    added = [p for p in (str(REPO_ROOT), str(bundle_dir)) if p not in sys.path]
    sys.path[:0] = added
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # importing the bundle's scripts must not write __pycache__ into it
    try:
        yield
    finally:
        sys.dont_write_bytecode = dont_write
        for p in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(p)
        for name in [m for m in sys.modules if m == "scripts" or m.startswith("scripts.")]:
            del sys.modules[name]


def _subprocess_env(bundle_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO_ROOT), str(bundle_dir)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    # Importing bundle code must not leave __pycache__ folders inside the bundle.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _parser(ctx: BundleContext, config: Path) -> Any:
    """A fresh ConfigParser over one config plus the metadata (fresh, because resolved content is cached)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(f=str(config))
    parser.read_meta(f=str(ctx.meta_file))
    return parser


# ------------------------------------------------------------------------------------------------- the checks
def check_required_files(ctx: BundleContext) -> str:
    """Check 1: every file in :data:`REQUIRED_FILES` exists (and is a file)."""
    missing = [f for f in REQUIRED_FILES if not (ctx.bundle_dir / f).is_file()]
    if missing:
        raise CheckFailed("missing " + ", ".join(missing))
    return f"all {len(REQUIRED_FILES)} present"


def load_schema(metadata: dict[str, Any], schema: str | os.PathLike | None, workdir: Path) -> tuple[dict, str]:
    """The metadata schema to validate against, hash-checked, and a note on where it came from.

    The expected md5 is the pinned one for the file the metadata's ``schema`` URL names, so a local copy of a
    different schema than the one the bundle declares fails too. With ``schema`` given it is used (offline);
    without, the URL is downloaded (10 s timeout).

    Raises:
        CheckFailed: unknown schema name, wrong hash, or no local copy and no network.
    """
    url = metadata.get("schema")
    if not isinstance(url, str) or not url:
        raise CheckFailed("metadata.json has no 'schema' URL")
    name = url.rstrip("/").rsplit("/", 1)[-1]
    expected = PINNED_SCHEMA_MD5.get(name)
    if expected is None:
        raise CheckFailed(
            f"metadata names schema '{name}', which has no pinned md5 (known: {', '.join(PINNED_SCHEMA_MD5)})"
        )
    if schema is not None:
        path = Path(schema)
        if not path.is_file():
            raise CheckFailed(f"--schema {path} does not exist")
        source = f"local {path.name}"
    else:
        path = workdir / name
        try:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - URL from metadata, hash-checked
                path.write_bytes(r.read())
        except Exception as e:  # no network, DNS, HTTP error: all mean "give me a local copy"
            raise CheckFailed(
                f"could not download schema {url} ({_one_line(str(e), 120)}); pass --schema PATH to a local copy"
            ) from e
        source = f"downloaded {name}"
    actual = file_digest(path, "md5")
    if actual != expected:
        raise CheckFailed(f"schema {path} has md5 {actual}, expected {expected} for {name}: wrong or modified copy")
    try:
        return json.loads(path.read_text()), source
    except json.JSONDecodeError as e:
        raise CheckFailed(f"schema {path} is not valid JSON: {e}") from e


def check_metadata_schema(ctx: BundleContext) -> str:
    """Check 2: metadata.json validates against MONAI's metadata schema (JSON Schema draft 2019-09, explicitly:
    older jsonschema releases silently validate it as draft 7)."""
    from jsonschema import Draft201909Validator

    meta = _metadata(ctx)
    schema, source = load_schema(meta, ctx.schema, ctx.workdir)
    Draft201909Validator.check_schema(schema)
    errors = sorted(Draft201909Validator(schema).iter_errors(meta), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {_one_line(e.message, 120)}" for e in errors[:3]
        )
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise CheckFailed(f"metadata.json invalid against {source}: {shown}{more}")
    return f"valid against {source} (draft 2019-09)"


def check_version_in_changelog(ctx: BundleContext) -> str:
    """Check 3: the metadata ``version`` is a key of its ``changelog``."""
    meta = _metadata(ctx)
    version = meta.get("version")
    changelog = meta.get("changelog")
    if not version:
        raise CheckFailed("metadata.json has no 'version'")
    if not isinstance(changelog, dict) or not changelog:
        raise CheckFailed("metadata.json has no 'changelog' object")
    if version not in changelog:
        raise CheckFailed(f"version {version} not in changelog (has {', '.join(list(changelog)[:5])})")
    return f"version {version} in changelog"


def _parse_only_workflow(ctx: BundleContext, config: Path, workflow_type: str) -> Any:
    """A ``ConfigWorkflow`` whose properties are looked up in the parsed config instead of instantiated.

    Stock ``check_properties()`` needs ``initialize()`` first, which runs the config's ``initialize``
    expressions, and then instantiates every required property: the trainer builds its dataset, so a bundle
    whose dataset generates phantoms or fills a cache would generate data during verification. Here a required
    property counts as present when its config id exists, which is what "missing" means for a bundle author;
    the optional-id checks of ``check_properties`` are MONAI's own and only read the config.
    """
    from monai.bundle import ConfigWorkflow
    from monai.utils import BundlePropertyConfig

    class ParseOnlyConfigWorkflow(ConfigWorkflow):
        def _get_property(self, name: str, property: dict) -> Any:  # noqa: A002 - MONAI's signature
            prop_id = property[BundlePropertyConfig.ID]
            if prop_id not in self.parser:
                # hasattr() in check_properties() treats AttributeError as "missing"
                raise AttributeError(f"config id '{prop_id}' of property '{name}' not found")
            return self.parser[prop_id]

    wf = ParseOnlyConfigWorkflow(
        config_file=str(config),
        meta_file=str(ctx.meta_file),
        logging_file=str(_need(ctx.logging_file, ctx)),
        workflow_type=workflow_type,
    )
    # parse() (what initialize() does before running expressions) only builds the reference table and
    # normalises ids ("#" to MONAI 1.6's "::"), which the optional-id comparison of check_properties relies on.
    wf.parser.parse(reset=True)
    return wf


def _check_workflow(ctx: BundleContext, config: Path, workflow_type: str) -> str:
    _need(ctx.meta_file, ctx)
    wf = _parse_only_workflow(ctx, config, workflow_type)
    try:
        missing = wf.check_properties()
    except AttributeError as e:
        # MONAI 1.6.1 compares optional-property ids as strings and crashes on an inline list or dict
        raise CheckFailed(
            f"{config.name}: check_properties crashed ({_one_line(str(e), 80)}); an optional property such as "
            "train#trainer#train_handlers is probably given inline instead of as an @reference"
        ) from e
    if missing is None:
        raise CheckFailed(f"no properties defined for workflow_type={workflow_type}")
    if missing:
        raise CheckFailed(f"{config.name} ({workflow_type}) missing or wrong properties: {', '.join(missing)}")
    return f"{config.name}: all {len(wf.properties)} {workflow_type} + meta properties present"


def check_workflow_train(ctx: BundleContext) -> str:
    """Check 4a: ``ConfigWorkflow(train.json, workflow_type="train").check_properties()`` finds nothing missing."""
    if not ctx.train_file.is_file():
        raise CheckSkipped("no configs/train.json")
    return _check_workflow(ctx, ctx.train_file, "train")


def check_workflow_infer(ctx: BundleContext) -> str:
    """Check 4b: ``ConfigWorkflow(inference.json, workflow_type="infer").check_properties()`` finds nothing
    missing."""
    return _check_workflow(ctx, _need(ctx.inference_file, ctx), "infer")


# ---- check 5: no drift between train and inference
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

    parser = _parser(ctx, _need(config, ctx))
    if id_ not in parser:
        raise CheckFailed(f"config id '{id_}' not found in {config.name}")
    try:
        # evaluated, so "$@hu_window[0]" compares by value: same text over different hyper-parameters is drift
        return unwrap(parser.get_parsed_content(id_, instantiate=False, eval_expr=True))
    except Exception:
        # an expression that needs a built component: compare it as written
        # (on a fresh parser: the failed attempt may have cached half-resolved content)
        parser = _parser(ctx, config)
        return unwrap(parser.get_parsed_content(id_, instantiate=False, eval_expr=False))


def _summarise(diffs: list[str], n: int = 3) -> str:
    return "; ".join(diffs[:n]) + (f" (+{len(diffs) - n} more)" if len(diffs) > n else "")


def check_network_consistency(ctx: BundleContext) -> str:
    """Check 5a: ``network_def`` in train.json and inference.json is the same definition.

    Both are resolved (``@`` references to hyper-parameters such as channel counts replaced by their values),
    class names fully qualified and defaulted arguments filled in, then compared key by key.
    """
    if not ctx.train_file.is_file():
        raise CheckSkipped("no configs/train.json")
    with _bundle_on_path(ctx.bundle_dir):
        train = _normalise_component(_resolved_config(ctx, ctx.train_file, "network_def"))
        infer = _normalise_component(_resolved_config(ctx, ctx.inference_file, "network_def"))
    diffs = _diff(train, infer, "network_def")
    if diffs:
        raise CheckFailed(f"network_def differs (train != inference): {_summarise(diffs)}")
    target = str(train.get("_target_", "?")) if isinstance(train, dict) else "?"
    return f"network_def identical ({target.rsplit('.', 1)[-1]})"


def _transform_list(ctx: BundleContext, config: Path, id_: str) -> list[Any]:
    """The list of transforms at ``id_``: the id may hold the list, or a Compose whose ``transforms`` is it."""
    content = _resolved_config(ctx, config, id_)
    if isinstance(content, dict) and "transforms" in content:
        content = content["transforms"]
    if not isinstance(content, list):
        raise CheckFailed(f"'{id_}' is not a list of transforms (got {_one_line(repr(content), 80)}): cannot compare")
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


def _project(transforms: list[Any], image_keys: set[str]) -> list[Any]:
    """The image part of a transform list: transforms not touching the image keys dropped, per-key arguments
    reduced to the image keys' values, ignored transforms (:data:`PREPROCESSING_IGNORED`) dropped and loaders
    reduced to :data:`LOADER_COMPARED_ARGS`."""
    out: list[Any] = []
    for t in transforms:
        if not isinstance(t, dict) or "_target_" not in t:
            out.append(t)  # an expression: compared as written
            continue
        classes = _class_names(str(t["_target_"]))
        if classes & PREPROCESSING_IGNORED:
            continue
        keys = _keys_of(t)
        if "keys" in t:
            idx = [i for i, k in enumerate(keys) if k in image_keys]
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
            if isinstance(v, (list, tuple)) and len(v) == len(keys) and len(keys) > 0:
                picked = [v[i] for i in idx]
                p[arg] = picked[0] if len(picked) == 1 else picked
        if idx:
            p["keys"] = [keys[i] for i in idx]
        out.append(p)
    return out


def check_preprocessing_consistency(ctx: BundleContext) -> str:
    """Check 5b: inference ``preprocessing`` does to the image what train ``train#deterministic_transforms`` does.

    Rule: the image keys are the keys inference preprocessing uses. Both lists are projected onto them (label-only
    transforms dropped, per-key arguments such as ``mode`` reduced to the image's value), transforms that do not
    change what the network sees are dropped (:data:`PREPROCESSING_IGNORED`: loading, typing, device moves,
    foreground crop, sampling indices), and the remaining sequences must be equal, class and arguments (defaults
    filled in), in order. The random training transforms are not compared.
    """
    if not ctx.train_file.is_file():
        raise CheckSkipped("no configs/train.json")
    with _bundle_on_path(ctx.bundle_dir):
        train_all = _transform_list(ctx, ctx.train_file, "train#deterministic_transforms")
        infer_all = _transform_list(ctx, ctx.inference_file, "preprocessing")
        image_keys = {k for t in infer_all if isinstance(t, dict) for k in _keys_of(t)}
        if not image_keys:
            raise CheckFailed("inference preprocessing names no keys: cannot tell which key is the image")
        train = _normalise_component(_project(train_all, image_keys))
        infer = _normalise_component(_project(infer_all, image_keys))
    names = lambda ts: [str(t.get("_target_", t)).rsplit(".", 1)[-1] if isinstance(t, dict) else t for t in ts]  # noqa: E731
    if len(train) != len(infer):
        raise CheckFailed(
            f"preprocessing drift on {sorted(image_keys)}: train {names(train)} != inference {names(infer)}"
        )
    diffs = _diff(train, infer, "transform")
    for i, (a, b) in enumerate(zip(train, infer)):
        if isinstance(a, dict) and isinstance(b, dict) and a.get("_target_") != b.get("_target_"):
            diffs.insert(0, f"transform#{i}: {names([a])[0]} != {names([b])[0]}")
    if diffs:
        raise CheckFailed(f"preprocessing drift on {sorted(image_keys)} (train != inference): {_summarise(diffs)}")
    return f"{len(train)} image transforms identical: {', '.join(names(train))}"


def check_net_in_out(ctx: BundleContext) -> str:
    """Check 6: ``monai.bundle.verify_net_in_out`` on inference.json's ``network_def`` against the metadata's
    ``network_data_format`` (fake input of the declared shape and dtype; output channels and dtype)."""
    from monai.bundle import verify_net_in_out

    with _bundle_on_path(ctx.bundle_dir):
        verify_net_in_out(
            net_id="network_def",
            meta_file=str(_need(ctx.meta_file, ctx)),
            config_file=str(_need(ctx.inference_file, ctx)),
            device=ctx.device,
        )
    fmt = _metadata(ctx)["network_data_format"]
    i, o = fmt["inputs"]["image"], fmt["outputs"]["pred"]
    return (
        f"input {i['num_channels']}ch {i['spatial_shape']} {i['dtype']} -> output {o['num_channels']}ch {o['dtype']}"
    )


# ---- checks 7 and 8: exports with round trips
def _input_shape(ctx: BundleContext) -> tuple[tuple[int, ...], Any]:
    """Batch-1 input shape and dtype the metadata describes, the way MONAI's exporters derive it."""
    import torch
    from monai.bundle.scripts import _get_fake_input_shape, _get_net_io_info  # pinned MONAI 1.6: same rule

    parser = _parser(ctx, _need(ctx.inference_file, ctx))
    shape = tuple(int(s) for s in _get_fake_input_shape(parser))
    dtype = _get_net_io_info(parser)[2]
    return shape, dtype if dtype.is_floating_point and dtype != torch.float16 else torch.float32


def _eager_net_and_checkpoint(ctx: BundleContext) -> tuple[Any, Path, str, str]:
    """The inference ``network_def`` in eval mode with the weights being exported, the checkpoint path, the key
    of the weights inside it ("" when flat) and a note on where the weights came from.

    ``models/model.pt`` is used when present (read only); otherwise the seeded freshly initialised network is
    saved to the workdir, so an untrained bundle can still prove it exports.
    """
    import torch

    if "eager" in ctx._cache:
        return ctx._cache["eager"]
    with _bundle_on_path(ctx.bundle_dir):
        torch.manual_seed(0)
        net = _parser(ctx, _need(ctx.inference_file, ctx)).get_parsed_content("network_def")
    ckpt = ctx.bundle_dir / "models" / "model.pt"
    key = ""
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("model"), dict):  # CheckpointSaver {"model": ...}
            key, state = "model", state["model"]
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            raise CheckFailed(f"models/model.pt does not fit network_def: {_one_line(str(e), 160)}") from e
        source = "models/model.pt"
    else:
        ckpt = ctx.workdir / "init_model.pt"
        torch.save(net.state_dict(), ckpt)
        source = "freshly initialised weights (no models/model.pt)"
    net.eval()
    ctx._cache["eager"] = (net, ckpt, key, source)
    return ctx._cache["eager"]


def _start_bundle_cli(ctx: BundleContext, tag: str, args: Sequence[str]) -> None:
    """Start ``python -m monai.bundle ARGS`` in the background (repo and bundle importable, cwd = workdir);
    :func:`_finish_bundle_cli` collects it. Most of an export's time is importing MONAI, so the TorchScript and
    ONNX exports overlap."""
    log = open(ctx.workdir / f"{tag}.log", "w")  # a file, not a pipe: a chatty exporter cannot block on it
    proc = subprocess.Popen(
        [sys.executable, "-m", "monai.bundle", *args],
        cwd=ctx.workdir,
        env=_subprocess_env(ctx.bundle_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ctx._cache[f"proc:{tag}"] = (proc, log)


def _finish_bundle_cli(ctx: BundleContext, tag: str, timeout: float = 900) -> tuple[int, str]:
    """Wait for the background command ``tag``; its exit status and output."""
    proc, log = ctx._cache.pop(f"proc:{tag}")
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


def _stop_background(ctx: BundleContext) -> None:
    """Kill background commands a failed check left running (only this run's own children)."""
    for key in [k for k in ctx._cache if k.startswith("proc:")]:
        proc, log = ctx._cache.pop(key)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def _compare(name: str, got: Any, want: Any, rtol: float, atol: float) -> str:
    import torch

    got = torch.as_tensor(got, dtype=want.dtype)
    if got.shape != want.shape:
        raise CheckFailed(f"{name} output shape {tuple(got.shape)} != eager {tuple(want.shape)}")
    err = (got - want).abs().max().item()
    if not torch.allclose(got, want, rtol=rtol, atol=atol):
        raise CheckFailed(f"{name} output differs from eager: max |diff| {err:.3g} (rtol={rtol}, atol={atol})")
    return f"max |diff| {err:.2g}"


def _export_args(ctx: BundleContext, out: Path, ckpt: Path, key: str) -> list[str]:
    args = ["network_def", "--filepath", str(out), "--ckpt_file", str(ckpt)]
    args += ["--meta_file", str(ctx.meta_file), "--config_file", str(ctx.inference_file)]
    return args + (["--key_in_ckpt", key] if key else [])


def check_torchscript_export(ctx: BundleContext) -> str:
    """Check 7: ``python -m monai.bundle ckpt_export`` scripts the network (or traces it at the metadata's input
    shape when scripting fails), then the loaded ``.ts`` matches the eager network on a random input."""
    import torch

    _need(ctx.meta_file, ctx)
    net, ckpt, key, source = _eager_net_and_checkpoint(ctx)
    shape, dtype = _input_shape(ctx)
    out = ctx.workdir / "model.ts"
    if "onnx_export" in ctx.planned and "proc:onnx" not in ctx._cache:
        _start_bundle_cli(ctx, "onnx", ["onnx_export", *_export_args(ctx, ctx.workdir / "model.onnx", ckpt, key)])
    # Scripting in-process takes well under a second; when it cannot work (SwinUNETR, ViTAutoEnc ...) this
    # spares a ckpt_export run that would only import MONAI to fail the same way.
    script_error = ""
    try:
        torch.jit.script(copy.deepcopy(net))
    except Exception as e:
        script_error = _last_error_line(f"{type(e).__name__}: {e}")
    if not script_error:
        _start_bundle_cli(ctx, "ts", ["ckpt_export", *_export_args(ctx, out, ckpt, key)])
        rc, output = _finish_bundle_cli(ctx, "ts")
        if rc != 0 or not out.is_file():
            script_error = _last_error_line(output)
    mode = "scripted"
    if script_error:
        shape_arg = "[" + ",".join(map(str, shape)) + "]"
        trace_args = ["--use_trace", "True", "--input_shape", shape_arg]
        _start_bundle_cli(ctx, "ts_trace", ["ckpt_export", *_export_args(ctx, out, ckpt, key), *trace_args])
        rc, output = _finish_bundle_cli(ctx, "ts_trace")
        if rc != 0 or not out.is_file():
            raise CheckFailed(f"ckpt_export failed: script: {script_error}; trace: {_last_error_line(output)}")
        mode = f"traced at {list(shape)} (script failed: {_one_line(script_error, 80)})"
    ts = torch.jit.load(str(out), map_location="cpu")
    ts.eval()
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.no_grad():
        diff = _compare("TorchScript", ts(x), net(x), TS_RTOL, TS_ATOL)
    return f"{mode}, {source}; round trip on {list(shape)}: {diff}"


def check_onnx_export(ctx: BundleContext) -> str:
    """Check 8: ``python -m monai.bundle onnx_export`` at the metadata's input shape, then (when onnxruntime is
    installed) the ONNX model's output matches the eager network on a random input."""
    import torch

    _need(ctx.meta_file, ctx)
    net, ckpt, key, source = _eager_net_and_checkpoint(ctx)
    shape, dtype = _input_shape(ctx)
    out = ctx.workdir / "model.onnx"
    if "proc:onnx" not in ctx._cache:  # not already started beside the TorchScript export
        _start_bundle_cli(ctx, "onnx", ["onnx_export", *_export_args(ctx, out, ckpt, key)])
    rc, output = _finish_bundle_cli(ctx, "onnx")
    if rc != 0 or not out.is_file():
        raise CheckFailed(f"onnx_export failed: {_last_error_line(output)}")
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise CheckSkipped(f"exported ({source}); onnxruntime not installed, round trip not run") from e
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        diff = _compare("ONNX Runtime", got, net(x), ONNX_RTOL, ONNX_ATOL)
    return f"exported ({source}); onnxruntime round trip on {list(shape)}: {diff}"


def check_large_files(ctx: BundleContext) -> str:
    """Check 9: every ``large_files.yml`` entry has a path inside the bundle and a sha256 (``hash_type: sha256``,
    64 hex ``hash_val``), and a file present at that path has that sha256."""
    path = _need(ctx.bundle_dir / "large_files.yml", ctx)
    try:
        entries = read_large_files(ctx.bundle_dir)
    except Exception as e:
        raise CheckFailed(f"{path.name}: {_one_line(str(e), 160)}") from e
    problems: list[str] = []
    present = 0
    root = ctx.bundle_dir.resolve()
    for i, e in enumerate(entries):
        rel = e.get("path")
        label = f"entry {i} ({rel})" if rel else f"entry {i}"
        if not isinstance(rel, str) or not rel:
            problems.append(f"{label}: no path")
            continue
        target = (ctx.bundle_dir / rel).resolve()
        if Path(rel).is_absolute() or root not in target.parents:
            problems.append(f"{label}: path must stay inside the bundle")
            continue
        if not e.get("url"):
            problems.append(f"{label}: no url")
        hash_type, hash_val = str(e.get("hash_type", "")).lower(), str(e.get("hash_val", "") or "").lower()
        if hash_type != "sha256":
            problems.append(f"{label}: hash_type is '{e.get('hash_type', '')}', expected sha256")
            continue
        if not re.fullmatch(r"[0-9a-f]{64}", hash_val):
            problems.append(f"{label}: hash_val is not a 64-hex sha256")
            continue
        if target.is_file():
            present += 1
            actual = sha256_file(target)
            if actual != hash_val:
                problems.append(f"{rel}: sha256 mismatch (file {actual[:12]}..., listed {hash_val[:12]}...)")
    if problems:
        raise CheckFailed("large_files.yml: " + _summarise(problems))
    return f"{len(entries)} entries with sha256, {present} present and matching"


#: Check name -> function, in the order they run. Export checks are flagged so ``skip_export`` can drop them.
CHECKS: dict[str, Callable[[BundleContext], str]] = {
    "required_files": check_required_files,
    "metadata_schema": check_metadata_schema,
    "version_in_changelog": check_version_in_changelog,
    "workflow_properties_train": check_workflow_train,
    "workflow_properties_infer": check_workflow_infer,
    "network_consistency": check_network_consistency,
    "preprocessing_consistency": check_preprocessing_consistency,
    "net_in_out": check_net_in_out,
    "torchscript_export": check_torchscript_export,
    "onnx_export": check_onnx_export,
    "large_files": check_large_files,
}
EXPORT_CHECKS: frozenset[str] = frozenset({"torchscript_export", "onnx_export"})


def run_check(name: str, ctx: BundleContext) -> CheckResult:
    """Run one check by name and turn its outcome (message or exception) into a :class:`CheckResult`."""
    start = time.perf_counter()
    # MONAI and the bundle's logging.conf log every step at INFO/WARNING; the result line says what matters
    previous_disable = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status, message = PASS, CHECKS[name](ctx)
    except CheckFailed as e:
        status, message = FAIL, str(e)
    except CheckSkipped as e:
        status, message = SKIP, str(e)
    except Exception as e:  # a crash inside MONAI or the bundle's code is a failure of this check only
        status, message = FAIL, f"{type(e).__name__}: {_one_line(str(e).splitlines()[0] if str(e) else '', 240)}"
    finally:
        logging.disable(previous_disable)
    return CheckResult(name, status, _one_line(message, 400), time.perf_counter() - start)


def verify_bundle(
    bundle_dir: str | os.PathLike,
    schema: str | os.PathLike | None = None,
    skip_export: bool = False,
    checks: Sequence[str] | None = None,
    device: str = "cpu",
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run the checks on one bundle, in a private temporary folder; the bundle is never written to.

    Args:
        bundle_dir: the bundle folder (holding ``configs/metadata.json``).
        schema: local copy of the metadata schema (md5-checked); ``None`` downloads it.
        skip_export: drop the TorchScript and ONNX export checks (the slow ones).
        checks: names from :data:`CHECKS` to run (default: all).
        device: device for the network forward passes of ``net_in_out``.
        on_result: called with each result as soon as it is known (for streaming output).

    Returns:
        One :class:`CheckResult` per check run, in :data:`CHECKS` order.
    """
    names = list(CHECKS) if checks is None else list(checks)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    names = [n for n in CHECKS if n in names and not (skip_export and n in EXPORT_CHECKS)]
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="verify_bundle_") as tmp:
        ctx = BundleContext(
            bundle_dir=Path(bundle_dir).resolve(),
            workdir=Path(tmp),
            schema=Path(schema).resolve() if schema is not None else None,
            device=device,
            planned=frozenset(names),
        )
        try:
            for name in names:
                result = run_check(name, ctx)
                results.append(result)
                if on_result is not None:
                    on_result(result)
        finally:
            _stop_background(ctx)
    return results


def find_bundles(bundles_root: str | os.PathLike = REPO_ROOT / "bundles") -> list[Path]:
    """Bundle folders under ``bundles_root``: every direct subfolder holding ``configs/metadata.json``."""
    root = Path(bundles_root)
    return sorted(p for p in root.iterdir() if (p / "configs" / "metadata.json").is_file()) if root.is_dir() else []
