"""What every check shares: results, the per-bundle context, one-line messages and the import set-up.

A check takes a :class:`BundleContext` and either returns a one-line PASS message, or raises
:class:`CheckFailed` (FAIL) or :class:`CheckSkipped` (SKIP, does not fail the run). Nothing here writes inside
the bundle: exports and checkpoints go to ``BundleContext.workdir``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bundlezoo.data.checks import one_line

if TYPE_CHECKING:
    from tools.verify_checks.declaration import Declaration

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
T = TypeVar("T")

#: The check that reports missing files; other checks skip what it already reports (see :meth:`BundleContext.config`).
FILES_CHECK = "required_files"


class CheckFailed(Exception):
    """The bundle fails a check; the message is the one-line reason shown to the user."""


class CheckSkipped(Exception):
    """A check does not apply (not declared, or its input is reported missing by another check); the message
    says why. Does not fail the run."""


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
    """What the checks need: the bundle, its declaration, the schema to use, a scratch folder, and options."""

    bundle_dir: Path
    workdir: Path
    declaration: Declaration
    schema: str | None = None  # local path or URL
    device: str = "cpu"
    planned: frozenset[str] = frozenset()  # names of the checks this run will do
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def meta_file(self) -> Path:
        """The bundle's ``configs/metadata.json``."""
        return self.bundle_dir / "configs" / "metadata.json"

    @property
    def logging_file(self) -> Path:
        """The bundle's ``configs/logging.conf``."""
        return self.bundle_dir / "configs" / "logging.conf"

    def config(self, name: str) -> Path:
        """Path of ``configs/<name>``, or the reason a check cannot use it.

        Args:
            name: config file name, e.g. ``train.json``.

        Raises:
            CheckSkipped: the file is missing and either the declaration requires it (then the files check,
                when it runs, already reports it: one failure line, not one per check) or only a default names it.
            CheckFailed: the declaration requires the file, it is missing and the files check is not run.
        """
        path = self.bundle_dir / "configs" / name
        if path.is_file():
            return path
        if name not in self.declaration.required_configs:
            raise CheckSkipped(f"no configs/{name}")
        if FILES_CHECK in self.planned:
            raise CheckSkipped(f"needs configs/{name}, which is missing (reported by {FILES_CHECK})")
        raise CheckFailed(f"missing configs/{name} ({self.declaration.source})")


def each_of(items: Iterable[T], check_one: Callable[[T], str]) -> str:
    """Run ``check_one`` on every item; one result line for all of them.

    ``check_one`` returns a summary, raises :class:`CheckFailed` for a failure or :class:`CheckSkipped` when the item
    does not apply. Failures win over passes (all are reported), and the check is skipped only when no item applied.
    """
    done, absent, failures = [], [], []
    for item in items:
        try:
            done.append(check_one(item))
        except CheckSkipped as e:
            absent.append(str(e))
        except CheckFailed as e:
            failures.append(str(e))
    if failures:
        raise CheckFailed("; ".join(failures))
    if not done:
        raise CheckSkipped("; ".join(absent))
    return "; ".join(done) + (f" (left out: {'; '.join(absent)})" if absent else "")


def last_error_line(output: str) -> str:
    """The most informative line of a failed subprocess: the last 'XxxError: ...' line, else the last line."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if re.match(r"^[\w.]*(Error|Exception)\b", lines[i]):
            # TorchScript puts its reason on the line after a bare "RuntimeError:"
            text = lines[i] if not lines[i].endswith(":") or i + 1 == len(lines) else f"{lines[i]} {lines[i + 1]}"
            return one_line(text)
    return one_line(lines[-1]) if lines else "no output"


def summarise(items: list[str], n: int = 3) -> str:
    """The first ``n`` items joined by ``; `` and how many more there are."""
    return "; ".join(items[:n]) + (f" (+{len(items) - n} more)" if len(items) > n else "")


def load_json(path: Path) -> Any:
    """Parsed JSON of ``path``; a missing or malformed file is a :class:`CheckFailed` naming it."""
    if not path.is_file():
        raise CheckFailed(f"missing {path.name}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckFailed(f"{path.name} is not valid JSON: {e}") from e


def metadata(ctx: BundleContext) -> dict[str, Any]:
    """The bundle's metadata.json as a dict (read once per run)."""
    if "metadata" not in ctx.cache:
        meta = load_json(ctx.meta_file)
        if not isinstance(meta, dict):
            raise CheckFailed("metadata.json must hold a JSON object")
        ctx.cache["metadata"] = meta
    return ctx.cache["metadata"]


def parser(ctx: BundleContext, config: Path) -> Any:
    """A fresh ConfigParser over one config plus the metadata (fresh, because resolved content is cached)."""
    from monai.bundle import ConfigParser

    p = ConfigParser()
    p.read_config(f=str(config))
    p.read_meta(f=str(ctx.meta_file))
    return p


def _bundle_packages(bundle_dir: Path) -> list[str]:
    """Top-level packages the bundle folder itself provides (``scripts``, a vendored ``bundlezoo`` ...)."""
    return sorted(p.name for p in bundle_dir.iterdir() if (p / "__init__.py").is_file())


def _owned(module: str, packages: list[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@contextlib.contextmanager
def bundle_on_path(bundle_dir: Path) -> Iterator[None]:
    """Import as ``python -m monai.bundle run`` does while a bundle's configs are parsed: the bundle folder first
    on ``sys.path``, so its own packages win (``scripts``, and in a staged release its vendored ``bundlezoo``
    over the one this verifier runs with).

    Modules of those packages already imported are set aside for the duration and put back afterwards, so one
    bundle's ``scripts`` or vendored ``bundlezoo`` never serves another bundle, nor this process afterwards.
    """
    packages = _bundle_packages(bundle_dir)
    set_aside = {m: sys.modules.pop(m) for m in [m for m in sys.modules if _owned(m, packages)]}
    sys.path.insert(0, str(bundle_dir))
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # importing the bundle's packages must not write __pycache__ into it
    try:
        yield
    finally:
        sys.dont_write_bytecode = dont_write
        with contextlib.suppress(ValueError):
            sys.path.remove(str(bundle_dir))
        for m in [m for m in sys.modules if _owned(m, packages)]:
            del sys.modules[m]
        sys.modules.update(set_aside)


def subprocess_env(bundle_dir: Path) -> dict[str, str]:
    """Environment of a ``python -m monai.bundle`` child: the bundle folder first on its path (its own packages
    win, as in :func:`bundle_on_path`), then this process's own import path, so the child finds what this
    verifier finds (e.g. ``bundlezoo`` from a checkout that is not installed)."""
    env = dict(os.environ)
    inherited = [str(Path(p or ".").resolve()) for p in sys.path if Path(p or ".").is_dir()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(bundle_dir), *inherited]))
    # Importing bundle code must not leave __pycache__ folders inside the bundle.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env
