"""A minimal valid MONAI bundle (tiny 3D UNet) written from scratch, for fast verifier tests.

It follows the model-zoo layout and this collection's config skeleton, but holds no data and no weights:
verification only parses configs and builds the (tiny) network, so it stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"

NETWORK_DEF: dict[str, Any] = {
    "_target_": "UNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 2,
    "channels": ["@base_channels", 8],
    "strides": [2],
    "num_res_units": 1,
}


def _deterministic(keys: list[str], image_only: bool) -> list[dict[str, Any]]:
    """The shared deterministic preprocessing, written for train (image+label) or inference (image)."""
    k = "@image_key" if image_only else keys
    mode = "bilinear" if image_only else ["bilinear", "nearest"]
    out: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": k},
        {"_target_": "EnsureChannelFirstd", "keys": k},
        {"_target_": "Orientationd", "keys": k, "axcodes": "RAS"},
        {"_target_": "Spacingd", "keys": k, "pixdim": [1.5, 1.5, 2.0], "mode": mode},
        {
            "_target_": "ScaleIntensityRanged",
            "keys": "@image_key",
            "a_min": -57,
            "a_max": 164,
            "b_min": 0.0,
            "b_max": 1.0,
            "clip": True,
        },
    ]
    if not image_only:
        out.append({"_target_": "CropForegroundd", "keys": keys, "source_key": "@image_key"})
    out.append({"_target_": "EnsureTyped", "keys": k})
    return out


def _common() -> dict[str, Any]:
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "ckpt_dir": "$@bundle_root + '/models'",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/data'",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "image_key": "image",
        "base_channels": 4,
        "network_def": dict(NETWORK_DEF),
        "network": "$@network_def.to(@device)",
    }


def train_config() -> dict[str, Any]:
    """train.json: the collection's skeleton with a tiny UNet; the dataset list is only built when run."""
    cfg = _common()
    cfg["label_key"] = "label"
    keys = ["@image_key", "@label_key"]
    cfg.update(
        {
            "loss": {"_target_": "DiceCELoss", "to_onehot_y": True, "softmax": True},
            "optimizer": {"_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": 0.001},
            "train": {
                "deterministic_transforms": _deterministic(keys, image_only=False),
                "random_transforms": [
                    {
                        "_target_": "RandCropByPosNegLabeld",
                        "keys": keys,
                        "label_key": "@label_key",
                        "spatial_size": [16, 16, 16],
                        "num_samples": 2,
                    }
                ],
                "preprocessing": {
                    "_target_": "Compose",
                    "transforms": "$@train#deterministic_transforms + @train#random_transforms",
                },
                "dataset": {
                    "_target_": "Dataset",
                    "data": "$[{'image': i, 'label': i.replace('images', 'labels')} "
                    "for i in sorted(glob.glob(@dataset_dir + '/images/*.nii.gz'))]",
                    "transform": "@train#preprocessing",
                },
                "dataloader": {"_target_": "DataLoader", "dataset": "@train#dataset", "batch_size": 1},
                "inferer": {"_target_": "SimpleInferer"},
                "postprocessing": {
                    "_target_": "Compose",
                    "transforms": [
                        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                        {"_target_": "AsDiscreted", "keys": ["pred", "label"], "argmax": [True, False],
                         "to_onehot": 2},
                    ],
                },
                "handlers": [{"_target_": "StatsHandler", "tag_name": "train_loss", "output_transform": "$monai.handlers.from_engine(['loss'], first=True)"}],
                "key_metric": {
                    "train_mean_dice": {
                        "_target_": "MeanDice",
                        "include_background": False,
                        "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
                    }
                },
                "trainer": {
                    "_target_": "SupervisedTrainer",
                    "max_epochs": 1,
                    "device": "@device",
                    "train_data_loader": "@train#dataloader",
                    "network": "@network",
                    "loss_function": "@loss",
                    "optimizer": "@optimizer",
                    "inferer": "@train#inferer",
                    "postprocessing": "@train#postprocessing",
                    "key_train_metric": "@train#key_metric",
                    "train_handlers": "@train#handlers",
                },
            },
            "initialize": ["$monai.utils.set_determinism(seed=0)"],
            "run": ["$@train#trainer.run()"],
        }
    )
    return cfg


def inference_config() -> dict[str, Any]:
    """inference.json: same network and image preprocessing as train.json, inverted on output."""
    cfg = _common()
    cfg.update(
        {
            "preprocessing": {"_target_": "Compose", "transforms": _deterministic(["@image_key"], image_only=True)},
            "dataset": {
                "_target_": "Dataset",
                "data": "$[{'image': i} for i in sorted(glob.glob(@dataset_dir + '/*.nii.gz'))]",
                "transform": "@preprocessing",
            },
            "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1},
            "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [16, 16, 16], "sw_batch_size": 1},
            "postprocessing": {
                "_target_": "Compose",
                "transforms": [
                    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
                    {
                        "_target_": "Invertd",
                        "keys": "pred",
                        "transform": "@preprocessing",
                        "orig_keys": "@image_key",
                        "nearest_interp": False,
                    },
                    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
                    {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir"},
                ],
            },
            "handlers": [
                {
                    "_target_": "CheckpointLoader",
                    "load_path": "$@bundle_root + '/models/model.pt'",
                    "load_dict": {"model": "@network"},
                }
            ],
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@dataloader",
                "network": "@network",
                "inferer": "@inferer",
                "postprocessing": "@postprocessing",
                "val_handlers": "@handlers",
            },
            "initialize": ["$monai.utils.set_determinism(seed=0)"],
            "run": ["$@evaluator.run()"],
        }
    )
    return cfg


def metadata() -> dict[str, Any]:
    """metadata.json valid against the 2024-07-25 schema."""
    tensor = {"type": "image", "format": "hounsfield", "num_channels": 1, "spatial_shape": ["16*n", "16*n", "16*n"],
              "dtype": "float32", "value_range": [0, 1], "is_patch_data": True,
              "channel_def": {"0": "image"}}
    return {
        "schema": SCHEMA_URL,
        "version": "0.1.0",
        "changelog": {"0.1.0": "minimal test bundle"},
        "monai_version": "1.6.1",
        "pytorch_version": "2.14.1",
        "numpy_version": "2.0.0",
        "required_packages_version": {"nibabel": "5.2.0"},
        "task": "Tiny segmentation bundle for verifier tests",
        "description": "A minimal bundle with a tiny 3D UNet; synthetic, no data.",
        "authors": "monai-bundle-collection tests",
        "copyright": "Copyright (c) the authors",
        "network_data_format": {
            "inputs": {"image": tensor},
            "outputs": {
                "pred": {"type": "image", "format": "segmentation", "num_channels": 2,
                         "spatial_shape": ["16*n", "16*n", "16*n"], "dtype": "float32", "value_range": [0, 1],
                         "is_patch_data": True, "channel_def": {"0": "background", "1": "foreground"}}
            },
        },
    }


LOGGING_CONF = """[loggers]
keys=root

[handlers]
keys=consoleHandler

[formatters]
keys=fullFormatter

[logger_root]
level=INFO
handlers=consoleHandler

[handler_consoleHandler]
class=StreamHandler
level=INFO
formatter=fullFormatter
args=(sys.stdout,)

[formatter_fullFormatter]
format=%(asctime)s - %(name)s - %(levelname)s - %(message)s
"""

LARGE_FILES = """large_files:
  - path: "models/model.pt"
    url: "https://example.org/minimal_bundle/model.pt"
    hash_val: "0000000000000000000000000000000000000000000000000000000000000000"
    hash_type: "sha256"
"""


def write_json(path: Path, data: Any) -> None:
    """Write a config the way the collection does (4-space indent)."""
    path.write_text(json.dumps(data, indent=4) + "\n")


def write_minimal_bundle(root: Path) -> Path:
    """Write the minimal bundle into ``root`` (created) and return it."""
    (root / "configs").mkdir(parents=True)
    (root / "docs").mkdir()
    write_json(root / "configs" / "metadata.json", metadata())
    write_json(root / "configs" / "train.json", train_config())
    write_json(root / "configs" / "inference.json", inference_config())
    (root / "configs" / "logging.conf").write_text(LOGGING_CONF)
    (root / "LICENSE").write_text("Apache License 2.0 (test fixture)\n")
    (root / "docs" / "README.md").write_text("# Minimal bundle\n\nTest fixture for tools/verify.py.\n")
    (root / "docs" / "data_license.txt").write_text("No data: synthetic test fixture.\n")
    (root / "large_files.yml").write_text(LARGE_FILES)
    return root


TRACE_ONLY_NET = '''"""A UNet whose forward calls numpy: torch.jit.script cannot compile it, torch.jit.trace can."""

import numpy as np
from monai.networks.nets import UNet


class TraceOnlyUNet(UNet):
    def forward(self, x):
        return super().forward(x) * float(np.ones(1)[0])
'''


def use_trace_only_network(root: Path) -> Path:
    """Switch the bundle's ``network_def`` (train and inference) to a bundle-specific network in ``scripts/``
    that can only be traced, to exercise the verifier's trace fallback."""
    (root / "scripts").mkdir()
    (root / "scripts" / "__init__.py").write_text("")
    (root / "scripts" / "trace_only.py").write_text(TRACE_ONLY_NET)
    for name in ("train.json", "inference.json"):
        path = root / "configs" / name
        cfg = json.loads(path.read_text())
        cfg["network_def"]["_target_"] = "scripts.trace_only.TraceOnlyUNet"
        write_json(path, cfg)
    return root


# ----------------------------------------------------------------------------------- other kinds of bundle
def _save_model(root: Path, network: Any, nested: bool) -> str:
    """Save ``network``'s weights (seeded init) as ``models/model.pt`` and list it in large_files.yml with its
    real sha256, as a release would; return the sha256."""
    import hashlib

    import torch

    (root / "models").mkdir(exist_ok=True)
    weights = root / "models" / "model.pt"
    torch.save({"model": network.state_dict()} if nested else network.state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    (root / "large_files.yml").write_text(LARGE_FILES.replace("0" * 64, digest))
    return digest


PRETRAIN_NETWORK_DEF: dict[str, Any] = {
    "_target_": "ViTAutoEnc",
    "in_channels": 1,
    "img_size": 16,
    "patch_size": 4,
    "out_channels": 1,
    "deconv_chns": 4,
    "hidden_size": 32,
    "mlp_dim": 64,
    "num_layers": 1,
    "num_heads": 2,
    "spatial_dims": 3,
}


def write_pretraining_bundle(root: Path) -> Path:
    """A pretraining-like bundle: train.json only (no inference.json), a ViT autoencoder whose forward returns
    a tuple (reconstruction, hidden states), an encoder checkpoint, no export; its declaration says so."""
    import torch
    from monai.networks.nets import ViTAutoEnc

    write_minimal_bundle(root)
    (root / "configs" / "inference.json").unlink()
    cfg = train_config()
    cfg["network_def"] = dict(PRETRAIN_NETWORK_DEF)
    cfg["loss"] = {"_target_": "torch.nn.L1Loss"}
    write_json(root / "configs" / "train.json", cfg)
    meta = metadata()
    meta["task"] = "Tiny self-supervised pretraining bundle for verifier tests"
    reconstruction = dict(meta["network_data_format"]["inputs"]["image"], format="reconstruction", value_range=[0, 1])
    reconstruction["spatial_shape"] = [16, 16, 16]
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [16, 16, 16]
    meta["network_data_format"]["outputs"] = {"reconstruction": reconstruction}
    meta["verify"] = {
        "configs": ["train.json"],
        "workflows": {"train.json": "train"},
        "network": {"config": "train.json", "id": "network_def"},
        "model": "models/model.pt",
        "input": "image",
        "output": "reconstruction",
        "consistency": [],
        "export": {"torchscript": "none", "onnx": False},
    }
    write_json(root / "configs" / "metadata.json", meta)
    torch.manual_seed(0)
    _save_model(root, ViTAutoEnc(**{k: v for k, v in PRETRAIN_NETWORK_DEF.items() if k != "_target_"}), nested=False)
    return root


CLASSIFIER_NETWORK_DEF: dict[str, Any] = {
    "_target_": "DenseNet",
    "spatial_dims": 3,
    "in_channels": 1,
    "out_channels": 2,
    "init_features": 4,
    "growth_rate": 4,
    "block_config": [2],
}


def write_classification_bundle(root: Path) -> Path:
    """A classification-like bundle: a tiny 3D DenseNet whose output is a vector of class logits (no spatial
    dims), inference without inversion to image space, a CheckpointSaver-style ``{"model": ...}`` checkpoint."""
    import torch
    from monai.networks.nets import DenseNet

    write_minimal_bundle(root)
    image_only = _deterministic(["@image_key"], image_only=True)
    train = train_config()
    train["network_def"] = dict(CLASSIFIER_NETWORK_DEF)
    train["loss"] = {"_target_": "torch.nn.CrossEntropyLoss"}
    train["train"]["deterministic_transforms"] = image_only
    train["train"]["random_transforms"] = [{"_target_": "RandFlipd", "keys": "@image_key", "prob": 0.5}]
    train["train"]["postprocessing"]["transforms"] = [{"_target_": "Activationsd", "keys": "pred", "softmax": True}]
    train["train"]["key_metric"] = {
        "train_accuracy": {
            "_target_": "ignite.metrics.Accuracy",
            "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
        }
    }
    write_json(root / "configs" / "train.json", train)
    infer = inference_config()
    infer["network_def"] = dict(CLASSIFIER_NETWORK_DEF)
    infer["inferer"] = {"_target_": "SimpleInferer"}
    infer["postprocessing"]["transforms"] = [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    ]
    write_json(root / "configs" / "inference.json", infer)
    meta = metadata()
    meta["task"] = "Tiny classification bundle for verifier tests"
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [16, 16, 16]
    meta["network_data_format"]["outputs"] = {
        "pred": {"type": "probabilities", "format": "classes", "num_channels": 2, "spatial_shape": [],
                 "dtype": "float32", "value_range": [], "is_patch_data": False,
                 "channel_def": {"0": "benign", "1": "malignant"}}
    }
    meta["verify"] = {"export": {"torchscript": "script", "onnx": True}}
    write_json(root / "configs" / "metadata.json", meta)
    torch.manual_seed(0)
    _save_model(root, DenseNet(**{k: v for k, v in CLASSIFIER_NETWORK_DEF.items() if k != "_target_"}), nested=True)
    return root
