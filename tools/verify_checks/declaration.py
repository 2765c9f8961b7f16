"""What a bundle declares about itself for verification: the ``verify`` object of its ``metadata.json``.

MONAI's pinned metadata schema (``meta_schema_20240725.json``) allows keys beyond its own (it has no
``additionalProperties: false``; only ``*_data_format`` keys are constrained), so the declaration lives beside the
``network_data_format`` it refers to, and metadata.json still validates. Every field is optional::

    "verify": {
        "configs": ["train.json", "evaluate.json", "inference.json", "multi_gpu_train.json"],
        "workflows": {"train.json": "train", "inference.json": "infer"},
        "network": {"config": "inference.json", "id": "network_def"},
        "model": "models/model.pt",
        "input": "image",
        "output": "pred",
        "consistency": [
            {"kind": "component", "configs": ["train.json", "inference.json"], "ids": "network_def"},
            {"kind": "transforms", "configs": ["train.json", "inference.json"],
             "ids": ["train#deterministic_transforms", "preprocessing"]}
        ],
        "export": {"torchscript": "script", "onnx": true, "input_shape": [1, 1, 96, 96, 96]},
        "checks": ["required_files", "metadata_schema", "..."]
    }

- ``configs``: files under ``configs/`` that must exist (``metadata.json`` and ``logging.conf`` always must).
- ``workflows``: config -> MONAI workflow type (``train`` / ``infer``) whose ``check_properties()`` must pass.
- ``network``: the config and id of the network that ``net_in_out`` runs and the exports convert.
- ``model``: the checkpoint (bundle-relative) loaded into that network when present; ``null`` for none.
- ``input`` / ``output``: names in ``network_data_format`` ``inputs`` / ``outputs`` describing the network's
  input and (for a tuple-returning network, by position, as the schema orders them) its output.
- ``consistency``: pairs of config ids that must resolve to the same thing: ``component`` (e.g. the network)
  compares the resolved definitions; ``transforms`` compares what two transform lists do to the keys the second
  list uses (e.g. train and inference preprocessing of the image). ``ids`` is one id or one per config.
- ``export``: ``torchscript`` is ``auto`` (script, else trace), ``script`` (must script), ``trace`` or ``none``;
  ``onnx`` true/false; ``input_shape`` the batch shape traced and round-tripped (default: batch 1 and the
  ``input``'s channels and spatial shape from ``network_data_format``, ``n = p = 1``).
- ``checks``: the checks that apply (default all); the others are reported as SKIP with the reason.

Missing fields take the defaults of :data:`DEFAULTS`, which are this collection's segmentation bundles (what the
verifier did before bundles declared anything): inference.json required, train.json checked when present.
Every config an explicitly declared field names must exist; configs only the defaults name are checked when present.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Key of the declaration in metadata.json.
DECLARATION_KEY = "verify"

DEFAULTS: dict[str, Any] = {
    "configs": ["inference.json"],
    "workflows": {"train.json": "train", "inference.json": "infer"},
    "network": {"config": "inference.json", "id": "network_def"},
    "model": "models/model.pt",
    "input": "image",
    "output": "pred",
    "consistency": [
        {"kind": "component", "configs": ["train.json", "inference.json"], "ids": "network_def"},
        {
            "kind": "transforms",
            "configs": ["train.json", "inference.json"],
            "ids": ["train#deterministic_transforms", "preprocessing"],
        },
    ],
    "export": {"torchscript": "auto", "onnx": True, "input_shape": None},
    "checks": None,
}
WORKFLOW_TYPES = ("train", "infer")
PAIR_KINDS = ("component", "transforms")
TORCHSCRIPT_MODES = ("auto", "script", "trace", "none")


class DeclarationError(ValueError):
    """The declaration cannot be used; the message is one line naming the field and the problem."""


@dataclass(frozen=True)
class Pair:
    """Two config ids that must resolve to the same thing (see the module docstring for ``kind``)."""

    kind: str
    configs: tuple[str, str]
    ids: tuple[str, str]

    def label(self) -> str:
        """``train.json#network_def ~ inference.json#network_def``."""
        return f"{self.configs[0]}#{self.ids[0]} ~ {self.configs[1]}#{self.ids[1]}"


@dataclass(frozen=True)
class Declaration:
    """A bundle's declaration with defaults filled in (see the module docstring)."""

    configs: tuple[str, ...]
    workflows: tuple[tuple[str, str], ...]
    network_config: str
    network_id: str
    model: str | None
    input: str
    output: str
    consistency: tuple[Pair, ...]
    torchscript: str
    onnx: bool
    input_shape: tuple[int, ...] | None
    checks: frozenset[str] | None
    required_configs: frozenset[str]
    source: str  # where it came from, for messages


def _fail(field: str, problem: str) -> DeclarationError:
    return DeclarationError(f"metadata.json {DECLARATION_KEY}#{field}: {problem}")


def _config_name(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value or "/" in value or "\\" in value:
        raise _fail(field, f"{value!r} is not a file name under configs/")
    return value


def _str_list(field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(field, f"must be a list of names, got {json.dumps(value)}")
    return value


def _pairs(value: Any) -> tuple[Pair, ...]:
    if not isinstance(value, list):
        raise _fail("consistency", "must be a list of {kind, configs, ids}")
    pairs = []
    for i, p in enumerate(value):
        field = f"consistency#{i}"
        if not isinstance(p, dict) or set(p) != {"kind", "configs", "ids"}:
            raise _fail(field, f"must be an object with exactly kind, configs, ids; got {json.dumps(p)}")
        if p["kind"] not in PAIR_KINDS:
            raise _fail(field, f"kind {p['kind']!r} is not one of {', '.join(PAIR_KINDS)}")
        configs, ids = p["configs"], p["ids"]
        if not isinstance(configs, list) or len(configs) != 2:
            raise _fail(field, "configs must name two configs")
        ids = [ids, ids] if isinstance(ids, str) else ids
        if not isinstance(ids, list) or len(ids) != 2 or not all(isinstance(x, str) and x for x in ids):
            raise _fail(field, "ids must be one config id or two")
        pairs.append(Pair(p["kind"], tuple(_config_name(field, c) for c in configs), tuple(ids)))
    return tuple(pairs)


def parse_declaration(metadata: dict[str, Any], known_checks: list[str]) -> Declaration:
    """The declaration of a bundle from its parsed metadata.json, defaults filled in, validated.

    Args:
        metadata: the parsed metadata.json.
        known_checks: names of the checks the verifier has (to validate ``checks``).

    Raises:
        DeclarationError: an unknown field, a wrong type or an unknown value (one line, naming the field).
    """
    declared = metadata.get(DECLARATION_KEY, {})
    if not isinstance(declared, dict):
        raise _fail("", "must be a JSON object")
    unknown = sorted(set(declared) - set(DEFAULTS))
    if unknown:
        raise _fail(unknown[0], f"unknown field (known: {', '.join(DEFAULTS)})")
    d = {**DEFAULTS, **declared}

    configs = [_config_name("configs", c) for c in _str_list("configs", d["configs"])]
    if not isinstance(d["workflows"], dict):
        raise _fail("workflows", "must map config names to train or infer")
    for name, kind in d["workflows"].items():
        _config_name("workflows", name)
        if kind not in WORKFLOW_TYPES:
            raise _fail("workflows", f"{name}: {kind!r} is not one of {', '.join(WORKFLOW_TYPES)}")
    net = d["network"]
    if not isinstance(net, dict) or not set(net) <= {"config", "id"}:
        raise _fail("network", "must be an object {config, id}")
    net = {**DEFAULTS["network"], **net}
    _config_name("network", net["config"])
    if not isinstance(net["id"], str) or not net["id"]:
        raise _fail("network", "id must be a config id")
    model = d["model"]
    inside = isinstance(model, str) and model and not Path(model).is_absolute() and ".." not in Path(model).parts
    if model is not None and not inside:
        raise _fail("model", f"{model!r} is not a path inside the bundle")
    for field in ("input", "output"):
        if not isinstance(d[field], str) or not d[field]:
            raise _fail(field, "must name an entry of network_data_format")
    consistency = _pairs(d["consistency"])
    export = d["export"]
    if not isinstance(export, dict) or not set(export) <= set(DEFAULTS["export"]):
        raise _fail("export", f"must be an object with {', '.join(DEFAULTS['export'])}")
    export = {**DEFAULTS["export"], **export}
    if export["torchscript"] not in TORCHSCRIPT_MODES:
        raise _fail("export", f"torchscript {export['torchscript']!r} is not one of {', '.join(TORCHSCRIPT_MODES)}")
    if not isinstance(export["onnx"], bool):
        raise _fail("export", "onnx must be true or false")
    shape = export["input_shape"]
    if shape is not None and (
        not isinstance(shape, list) or len(shape) < 2 or not all(isinstance(s, int) and s > 0 for s in shape)
    ):
        raise _fail("export", f"input_shape must be a list of positive integers [N, C, ...], got {json.dumps(shape)}")
    checks = d["checks"]
    if checks is not None:
        bad = [c for c in _str_list("checks", checks) if c not in known_checks]
        if bad:
            raise _fail("checks", f"unknown check {bad[0]!r} (known: {', '.join(known_checks)})")

    # Configs an explicitly declared field names must exist; those only a default names are used when present.
    required = set(configs)
    if "workflows" in declared:
        required |= set(d["workflows"])
    if "network" in declared:
        required.add(net["config"])
    if "consistency" in declared:
        required |= {c for p in consistency for c in p.configs}
    return Declaration(
        configs=tuple(configs),
        workflows=tuple(d["workflows"].items()),
        network_config=net["config"],
        network_id=net["id"],
        model=model,
        input=d["input"],
        output=d["output"],
        consistency=consistency,
        torchscript=export["torchscript"],
        onnx=export["onnx"],
        input_shape=tuple(shape) if shape is not None else None,
        checks=frozenset(checks) if checks is not None else None,
        required_configs=frozenset(required),
        source=f"declared in metadata.json {DECLARATION_KEY}" if declared else "required by the verifier's defaults",
    )
