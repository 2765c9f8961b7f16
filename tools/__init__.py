"""Development tools of the collection: the bundle verifier, packaging, experiments and phantom generation.

Nothing here ships inside a release zip: a packaged bundle vendors only the part of ``bundlezoo`` its configs use.
The command-line programs are thin: ``python -m tools.verify``, ``python -m tools.package`` … (or the console
scripts that ``pyproject.toml`` installs).
"""
