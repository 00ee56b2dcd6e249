"""Old import paths, kept working for one release: each warns once and points to the new home.

A module that lost names does ``__getattr__ = moved(__name__, {"old": "minarmd.new_module:new_name"})``;
Python calls it only for names the module no longer defines.
"""
from __future__ import annotations

import importlib
import warnings


def moved(module: str, names: dict[str, str]):
    """A module-level ``__getattr__`` serving ``names`` (old name -> "package.module:new_name")."""
    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target_module, _, target = names[name].partition(":")
        warnings.warn(f"{module}.{name} is deprecated: use {target_module}.{target} (the old path goes in the "
                      f"next release)", DeprecationWarning, stacklevel=2)
        value = importlib.import_module(target_module)
        for part in target.split("."):  # "TrainConfig.from_preset": an attribute of an attribute
            value = getattr(value, part)
        return value
    return __getattr__
