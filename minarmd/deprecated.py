"""Old import paths, kept working for one release: each warns once and points to the new home.

A module that lost names does ``__getattr__ = moved(__name__, {"old": "minarmd.new_module:new_name"})``;
Python calls it only for names the module no longer defines. A function kept under its old name with
another signature calls ``warn("minarmd.module.old", "what to use")`` first.
"""
from __future__ import annotations

import importlib
import warnings


def warn(old: str, new: str) -> None:
    """The one deprecation message: ``old`` is deprecated, use ``new``."""
    warnings.warn(f"{old} is deprecated: use {new} (the old path goes in the next release)",
                  DeprecationWarning, stacklevel=3)


def moved(module: str, names: dict[str, str]):
    """A module-level ``__getattr__`` serving ``names`` (old name -> "package.module:new_name")."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target_module, _, target = names[name].partition(":")
        warn(f"{module}.{name}", f"{target_module}.{target}")
        value = importlib.import_module(target_module)
        for part in target.split("."):  # "TrainConfig.from_preset": an attribute of an attribute
            value = getattr(value, part)
        return value
    return __getattr__
