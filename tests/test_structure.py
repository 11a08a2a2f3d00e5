"""The package's own shape: no import cycles, a registry that depends on nothing, each module
importable first, and recipe overrides that keep the model's own recipe."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import zoo

PACKAGE = Path(zoo.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The zoo modules ``name`` imports, anywhere in its file (function-local imports too: a cycle
    through one still fails at the first call that runs it)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # `from . import models` imports the module zoo.models; `from .x import f` imports zoo.x.
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle():
    # The checker itself must be able to fail.
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_inside_the_package():
    graph = _import_graph()
    assert len(graph) > 20 and "zoo.registry" in graph and "zoo.models.lenet" in graph
    assert graph["zoo.models.lenet"] >= {"zoo.classifier", "zoo.registry"}  # the parser sees real edges
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_registry_imports_nothing_of_the_package():
    assert _import_graph()["zoo.registry"] == set()


def test_every_module_imports_first_in_a_fresh_package():
    # One interpreter (torch is slow to import) in which the zoo package is dropped from
    # sys.modules before each module is imported: each one then comes first, as in a fresh process.
    names = sorted(_modules())
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for m in [m for m in sys.modules if m == 'zoo' or m.startswith('zoo.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        print(f'FAIL {name}: {type(err).__name__}: {err}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "FAIL" not in out.stdout, out.stdout


# ------------------------------------------------------------------------------------ recipes
def test_recipe_dict_override_keeps_the_models_own_recipe():
    spec = zoo.get_spec("mlp")
    model = zoo.create_model("mlp", recipe={"weight_decay": 1e-3})
    assert model.recipe.weight_decay == 1e-3
    # Everything else is the mlp's recipe, not the dataclass defaults.
    assert model.recipe == spec.recipe.replace(weight_decay=1e-3)
    assert model.recipe.schedule == "cosine" and model.recipe.label_smoothing == 0.1 and model.recipe.epochs == 30
    # The constructor arguments a checkpoint keeps rebuild the same recipe.
    rebuilt = zoo.create_model("mlp", **model.zoo_kwargs)
    assert rebuilt.recipe == model.recipe


def test_unknown_recipe_field_is_refused():
    with pytest.raises(ValueError, match="unknown recipe field.*'lr_max'"):
        zoo.create_model("mlp", recipe={"lr_max": 1.0})


def test_a_momentum_outside_0_to_1_is_refused_in_one_line(tmp_path, capsys):
    from zoo.cli import main

    # Momentum 5 makes SGD's steps grow without bound: a NaN model, not a recipe.
    assert main(["train", "softmax", "--momentum", "5", "--out", str(tmp_path / "runs")]) == 2
    assert "recipe.momentum must be in [0, 1), got 5.0" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="momentum"):
        zoo.Recipe(momentum=1.0)
