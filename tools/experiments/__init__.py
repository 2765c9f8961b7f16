"""Experiment harness (development only, never shipped in a release zip): plan -> run -> report.

An experiment file names arms (stacks of bundle config files + overrides) and grids over overrides and seeds
(:mod:`tools.experiments.plan`); every run is built with MONAI's ``ConfigWorkflow`` and trained with timing, memory
and curve handlers attached, resumably (:mod:`tools.experiments.runner`); the results JSON becomes markdown tables
and a plot in a docs file (:mod:`tools.experiments.report`). Command line: ``python -m tools.experiments``.
"""
