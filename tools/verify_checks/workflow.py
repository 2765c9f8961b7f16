"""Check ``workflow_properties``: MONAI's ``ConfigWorkflow(...).check_properties()`` for every declared config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tools.verify_checks.base import BundleContext, CheckFailed, CheckSkipped, each_of, one_line


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

    if not ctx.logging_file.is_file():
        raise CheckFailed("missing configs/logging.conf")
    wf = ParseOnlyConfigWorkflow(
        config_file=str(config),
        meta_file=str(ctx.meta_file),
        logging_file=str(ctx.logging_file),
        workflow_type=workflow_type,
    )
    # parse() (what initialize() does before running expressions) only builds the reference table and
    # normalises ids ("#" to MONAI 1.6's "::"), which the optional-id comparison of check_properties relies on.
    wf.parser.parse(reset=True)
    return wf


def _check_one(ctx: BundleContext, config: Path, workflow_type: str) -> str:
    wf = _parse_only_workflow(ctx, config, workflow_type)
    try:
        missing = wf.check_properties()
    except AttributeError as e:
        # MONAI 1.6.1 compares optional-property ids as strings and crashes on an inline list or dict
        raise CheckFailed(
            f"{config.name}: check_properties crashed ({one_line(str(e), 80)}); an optional property such as "
            "train#trainer#train_handlers is probably given inline instead of as an @reference"
        ) from e
    if missing is None:
        raise CheckFailed(f"no properties defined for workflow_type={workflow_type}")
    if missing:
        raise CheckFailed(f"{config.name} ({workflow_type}) missing or wrong properties: {', '.join(missing)}")
    return f"{config.name} ({workflow_type}): {len(wf.properties)} properties"


def check_workflow_properties(ctx: BundleContext) -> str:
    """Every config of the declaration's ``workflows`` that exists passes ``check_properties()`` for its workflow
    type (train / infer, meta properties included); a declared config that is missing fails (see
    :meth:`BundleContext.config`), one only the defaults name is left out."""
    if not ctx.declaration.workflows:
        raise CheckSkipped("no workflows declared")
    return each_of(ctx.declaration.workflows, lambda item: _check_one(ctx, ctx.config(item[0]), item[1]))
