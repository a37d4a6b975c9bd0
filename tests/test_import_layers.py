"""The packages form layers and imports only go down: a metric never depends on a model, a model never on
the training loop, the loop never on a command-line entry point. Every import counts, at module level or
inside a function, so a cycle cannot be dodged by moving an import into a function body."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Lowest first. A package may import itself and the packages of lower layers, never a package of its own
#: layer or of a higher one.
LAYERS: tuple[tuple[str, ...], ...] = (
    # pure functions of arrays and tensors, nothing else of the project: the metrics, and the finite
    # orientation groups with the search over them
    ("metrics", "orientation"),
    ("data",),
    ("slots",),
    ("weak_supervision",),
    ("viz",),
    ("scoring",),  # a model scored on an eval set
    ("training",),  # config, builder, checkpoints, loop, tasks
    ("studies", "eval"),  # multi-run studies; evaluation of a trained run from the command line
    ("bench", "train_slots"),  # benchmarks and the training entry point
)
LAYER_OF = {package: index for index, packages in enumerate(LAYERS) for package in packages}


def project_modules(root: Path) -> dict[str, Path]:
    """module name -> file, for every Python file of the layered packages under `root`."""
    modules = {}
    for package in LAYER_OF:
        single = root / f"{package}.py"
        if single.is_file():
            modules[package] = single
        for path in sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []:
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, wherever it stands."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def layer_violations(root: Path) -> list[str]:
    """One line per import that goes sideways or up: 'file:line: a (layer i) imports b (layer j)'."""
    violations = []
    for module, path in project_modules(root).items():
        own = module.split(".")[0]
        for line, name in imported_modules(path, module):
            target = name.split(".")[0]
            if target == own or target not in LAYER_OF:
                continue
            if LAYER_OF[target] >= LAYER_OF[own]:
                violations.append(f"{path.relative_to(root)}:{line}: {own} (layer {LAYER_OF[own]}) imports "
                                  f"{name} (layer {LAYER_OF[target]})")
    return violations


def test_every_package_of_the_layout_is_in_a_layer():
    """A new top-level package must be placed in LAYERS, or its imports would go unchecked."""
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages <= set(LAYER_OF), f"packages missing from LAYERS: {sorted(packages - set(LAYER_OF))}"


def test_imports_only_go_down_the_layers():
    violations = layer_violations(ROOT)
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


def test_metrics_import_nothing_else_of_the_project():
    modules = project_modules(ROOT)
    others = [f"{path.relative_to(ROOT)}:{line}: {name}" for module, path in modules.items()
              if module.split(".")[0] == "metrics"
              for line, name in imported_modules(path, module)
              if name.split(".")[0] in LAYER_OF and name.split(".")[0] != "metrics"]
    assert not others, others


@pytest.mark.parametrize("source, expected", [
    ("from data import shards\n", "metrics (layer 0) imports data (layer 1)"),
    ("def late():\n    import training.loop\n", "metrics (layer 0) imports training.loop (layer 6)"),
])
def test_the_checker_finds_an_upward_import_anywhere(tmp_path, source, expected):
    """The check itself can fail: an upward import at module level or hidden in a function is reported."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "__init__.py").write_text("")
    (tmp_path / "metrics" / "ari.py").write_text(source)
    assert [line.split(": ", 1)[1] for line in layer_violations(tmp_path)] == [expected]


def test_the_checker_refuses_siblings_and_resolves_relative_imports(tmp_path):
    for package, source in (("eval", "from studies import runner\n"), ("studies", "from . import runner\n")):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(source)
    (tmp_path / "studies" / "runner.py").write_text("from ..eval import x\n")
    found = sorted(line.split(": ", 1)[1] for line in layer_violations(tmp_path))
    assert found == ["eval (layer 7) imports studies (layer 7)", "studies (layer 7) imports eval (layer 7)"]
