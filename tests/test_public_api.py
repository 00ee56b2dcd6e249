"""The course uses only the documented public API: every name a notebook, an exercise notebook, a
solution or a checker imports from minarmd is in ``minarmd.__all__`` or in the ``__all__`` of a module
listed in ``minarmd.PUBLIC_MODULES`` (and so is every ``module.name`` they read off such a module).
Old import paths still work for one release, with a DeprecationWarning."""
import ast
import importlib
import json
import warnings
from pathlib import Path

import pytest

import minarmd

ROOT = Path(__file__).resolve().parents[1]
COURSE = (sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "exercises").glob("*.ipynb"))
          + sorted((ROOT / "exercises" / "solutions").glob("*.py")) + sorted((ROOT / "minarmd" / "check").glob("*.py")))


def sources(path: Path) -> list[str]:
    """The Python code of a file: a script, or a notebook's code cells (IPython magics dropped)."""
    if path.suffix == ".py":
        return [path.read_text()]
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    return ["\n".join(line for line in "".join(c["source"]).splitlines() if not line.lstrip().startswith(("%", "!")))
            for c in cells]


def public_names(module: str) -> set[str] | None:
    """The documented names of ``minarmd`` or one of its public modules; None if the module is not public."""
    if module == "minarmd":
        return set(minarmd.__all__) | set(minarmd.PUBLIC_MODULES)
    parts = module.split(".")
    if parts[0] != "minarmd" or len(parts) != 2 or parts[1] not in minarmd.PUBLIC_MODULES:
        return None
    return set(importlib.import_module(module).__all__)


def violations(code: str, package: str = "minarmd.check") -> list[str]:
    """What ``code`` takes from minarmd that is not public. ``package`` resolves relative imports."""
    found, modules = [], {}  # modules: local name -> "minarmd.viz" for names bound to a minarmd module
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if base != "minarmd" and not base.startswith("minarmd."):
                continue
            allowed = public_names(base)
            for alias in node.names:
                if allowed is None or alias.name not in allowed:
                    found.append(f"from {base} import {alias.name}")
                elif base == "minarmd" and alias.name in minarmd.PUBLIC_MODULES:
                    modules[alias.asname or alias.name] = f"minarmd.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "minarmd" or alias.name.startswith("minarmd."):
                    if alias.name != "minarmd" and public_names(alias.name) is None:
                        found.append(f"import {alias.name}")
                    modules[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):  # module.name reads
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            allowed = public_names(modules[node.value.id])
            if allowed is not None and node.attr not in allowed:
                found.append(f"{modules[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_course_imports_only_public_names(path):
    package = "minarmd.check" if path.parent.name == "check" else "minarmd"
    bad = [v for code in sources(path) for v in violations(code, package)]
    assert bad == [], f"{path.name} uses names minarmd does not document as public: {bad}"


def test_the_detector_flags_internals():
    # each line below is something the course once did; the check must catch every one
    assert violations("from minarmd.evaluate import _estimate") == ["from minarmd.evaluate import _estimate"]
    assert violations("from minarmd.train import draw_noise") == ["from minarmd.train import draw_noise"]
    assert violations("from minarmd.check.ex03_causality import as_function_of_embeddings")
    assert violations("from ..evaluate import _estimate", "minarmd.check") == ["from minarmd.evaluate import _estimate"]
    assert violations("from minarmd import viz\nviz._shown('a')") == ["minarmd.viz._shown"]
    assert violations("import minarmd.viz as v\nv.mask_table") == []
    assert violations("from minarmd import throughput as tp\ntp.network_config") == [
        "minarmd.throughput.network_config"]
    assert violations("from minarmd import make_config") == ["from minarmd import make_config"]
    assert violations("from minarmd import ARMD, viz\nfrom minarmd.kinds import get_kind") == []


def test_every_public_module_lists_what_it_exports():
    for name in minarmd.PUBLIC_MODULES:
        module = importlib.import_module(f"minarmd.{name}")
        missing = [n for n in module.__all__ if not hasattr(module, n)]
        assert missing == [], f"minarmd.{name}.__all__ names what it does not define: {missing}"
    assert [n for n in minarmd.__all__ if not hasattr(minarmd, n)] == []


OLD_PATHS = [("minarmd.train", "train", "minarmd.training", "train_model"),
             ("minarmd.train", "make_config", "minarmd.train_config", "TrainConfig.from_preset"),
             ("minarmd.train", "TrainConfig", "minarmd.train_config", "TrainConfig"),
             ("minarmd.train", "load_model", "minarmd.checkpoint", "load_model"),
             ("minarmd.train", "build_model", "minarmd.kinds", "build_model"),
             ("minarmd.train", "draw_noise", "minarmd.kinds", "draw_noise"),
             ("minarmd.train", "training_loss", "minarmd.kinds", "training_loss"),
             ("minarmd.train", "learning_rate", "minarmd.optim", "learning_rate"),
             ("minarmd.train", "finetune_sbp", "minarmd.training", "finetune_sbp"),
             ("minarmd.train", "EMA", "minarmd.optim", "EMA"),
             ("minarmd.train", "PRESETS", "minarmd.train_config", "PRESETS"),
             ("minarmd", "make_config", "minarmd.train_config", "TrainConfig.from_preset"),
             ("minarmd.sampler", "fill", "minarmd.kinds", "fill"),
             ("minarmd.throughput", "MODELS", "minarmd.kinds", "KINDS")]


@pytest.mark.parametrize("old_module, old, new_module, new", OLD_PATHS, ids=[f"{m}.{n}" for m, n, _, _ in OLD_PATHS])
def test_old_import_paths_work_with_a_deprecation_warning(old_module, old, new_module, new):
    module = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=f"{old_module}.{old} is deprecated: use {new_module}.{new}"):
        value = getattr(module, old)
    target = importlib.import_module(new_module)
    for part in new.split("."):
        target = getattr(target, part)
    assert value == target
    with pytest.raises(AttributeError):
        getattr(module, old + "_nonexistent")


def test_deprecated_functions_warn_and_still_answer():
    from minarmd import ARMD, ARMDConfig, TrainConfig
    from minarmd import evaluate, throughput

    model = ARMD(ARMDConfig(vocab_size=5, max_len=4, n_layer=1, n_head=1, n_embd=8))
    with pytest.warns(DeprecationWarning, match="kind_of"):
        assert evaluate.model_kind(model) == "armd"
    with pytest.warns(DeprecationWarning, match="network_config"):
        assert throughput.network_config(TrainConfig(), 65) == TrainConfig().network_config(65)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new paths do not warn
        assert importlib.import_module("minarmd.train_config").TrainConfig is TrainConfig
        assert minarmd.train_model is importlib.import_module("minarmd.training").train_model
