"""Checks ``metadata_schema`` and ``version_in_changelog``: metadata.json against MONAI's pinned schema.

The schema is read from a local copy (``--schema PATH``, offline) or, only when the user passes a URL
(``--schema https://...``), downloaded. Either way it is used only when its md5 is the one pinned here for the
schema file the metadata's ``schema`` URL names, so a tampered, truncated or different schema never passes.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

from tools.verify_checks.base import BundleContext, CheckFailed, metadata, one_line

#: md5 of the MONAI metadata schemas we trust, by the file name in the metadata's ``schema`` URL.
PINNED_SCHEMA_MD5: dict[str, str] = {
    "meta_schema_20240725.json": "06954cad2cc5d3784e72077ac76f0fc8",
}


def _is_url(schema: str) -> bool:
    return schema.split(":", 1)[0].lower() in ("http", "https", "file")


def load_schema(meta: dict[str, Any], schema: str | None, workdir: Path) -> tuple[dict, str]:
    """The metadata schema to validate against, hash-checked, and a note on where it came from.

    Args:
        meta: the parsed metadata.json (its ``schema`` URL names the schema file and so the pinned md5).
        schema: a local path to the schema, or a URL to download it from (10 s timeout); ``None`` fails with how
            to pass one: nothing is downloaded unless asked for.
        workdir: where a download is written.

    Raises:
        CheckFailed: no schema given, unknown schema name, wrong md5, or a download that failed.
    """
    url = meta.get("schema")
    if not isinstance(url, str) or not url:
        raise CheckFailed("metadata.json has no 'schema' URL")
    name = url.rstrip("/").rsplit("/", 1)[-1]
    expected = PINNED_SCHEMA_MD5.get(name)
    if expected is None:
        raise CheckFailed(
            f"metadata names schema '{name}', which has no pinned md5 (known: {', '.join(PINNED_SCHEMA_MD5)})"
        )
    if schema is None:
        raise CheckFailed(f"no schema given: pass --schema PATH to a local copy of {name} (or --schema URL)")
    if _is_url(schema):
        path = workdir / name
        try:
            with urllib.request.urlopen(schema, timeout=10) as r:  # noqa: S310 - asked for by the user, md5-checked
                path.write_bytes(r.read())
        except Exception as e:  # no network, DNS, HTTP error: all mean "give me a local copy"
            raise CheckFailed(
                f"could not download schema {schema} ({one_line(str(e), 120)}); pass --schema PATH to a local copy"
            ) from e
        source = f"downloaded {name}"
    else:
        path = Path(schema)
        if not path.is_file():
            raise CheckFailed(f"--schema {path} does not exist")
        source = f"local {path.name}"
    actual = hashlib.md5(path.read_bytes()).hexdigest()  # noqa: S324 - md5 is the hash MONAI's schema is pinned by
    if actual != expected:
        raise CheckFailed(f"schema {schema} has md5 {actual}, expected {expected} for {name}: wrong or modified copy")
    try:
        return json.loads(path.read_text()), source
    except json.JSONDecodeError as e:
        raise CheckFailed(f"schema {schema} is not valid JSON: {e}") from e


def check_metadata_schema(ctx: BundleContext) -> str:
    """metadata.json validates against MONAI's metadata schema (JSON Schema draft 2019-09, explicitly: older
    jsonschema releases silently validate it as draft 7)."""
    from jsonschema import Draft201909Validator

    meta = metadata(ctx)
    schema, source = load_schema(meta, ctx.schema, ctx.workdir)
    Draft201909Validator.check_schema(schema)
    errors = sorted(Draft201909Validator(schema).iter_errors(meta), key=lambda e: list(e.absolute_path))
    if errors:
        shown = "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {one_line(e.message, 120)}" for e in errors[:3]
        )
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise CheckFailed(f"metadata.json invalid against {source}: {shown}{more}")
    return f"valid against {source} (draft 2019-09)"


def check_version_in_changelog(ctx: BundleContext) -> str:
    """The metadata ``version`` is a key of its ``changelog``."""
    meta = metadata(ctx)
    version = meta.get("version")
    changelog = meta.get("changelog")
    if not version:
        raise CheckFailed("metadata.json has no 'version'")
    if not isinstance(changelog, dict) or not changelog:
        raise CheckFailed("metadata.json has no 'changelog' object")
    if version not in changelog:
        raise CheckFailed(f"version {version} not in changelog (has {', '.join(list(changelog)[:5])})")
    return f"version {version} in changelog"
