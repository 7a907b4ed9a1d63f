"""The structure the project promises (docs/design.md): the import contract, module sizes, imports at the
top of modules (function-level only for heavy or optional dependencies, each commented), an engine that
imports only torch, and one registry idiom for every kind of thing gnsel has many of."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import gnsel
from gnsel.registry import Registry, UnknownNameError

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "gnsel"
MAX_LINES = 600


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_package_is_the_checkout() -> None:
    assert Path(gnsel.__file__).resolve().parent == SRC


def test_import_contract() -> None:
    """``lint-imports`` (import-linter, configured in pyproject.toml) keeps every contract."""
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    proc = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout, proc.stdout[-6000:]


def test_no_module_over_the_limit() -> None:
    big = {str(p.relative_to(SRC)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


_WHY = re.compile(r"#\s*(heavy|optional)\b")  # "# heavy: ray starts slowly", "# optional: Chromium"


def _function_imports(path: Path) -> list[tuple[int, str]]:
    """Imports inside functions whose line (or the line before) carries no comment saying why."""
    text = path.read_text()
    lines = text.splitlines()
    tree = ast.parse(text)
    bad = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                here = lines[node.lineno - 1]
                k = node.lineno - 2  # a comment above a block of imports covers the block
                while k >= 0 and lines[k].strip().startswith(("from ", "import ", ")")) or (k >= 0 and not lines[k].strip()):
                    k -= 1
                before = lines[k] if k >= 0 else ""
                if not (_WHY.search(here) or (before.strip().startswith("#") and _WHY.search(before))):
                    bad.append((node.lineno, here.strip()))
    return bad


def test_function_level_imports_say_why() -> None:
    """Function-level imports only for heavy or optional dependencies, each commented ``# heavy:`` or
    ``# optional:`` on its line or the line before."""
    bad = {str(p.relative_to(SRC)): b for p in _modules() if (b := _function_imports(p))}
    assert not bad, f"function-level imports without a comment saying why: {bad}"


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a relative ``from . import`` in ``path`` names."""
    package = list(path.relative_to(SRC.parent).with_suffix("").parts)
    package = package[:-1]  # the module's package (an __init__ is its own package: drop "__init__")
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_engine_imports_only_torch_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    found = {}
    for p in sorted((SRC / "gradnorm").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside the engine, or gnsel.registry (stdlib only itself)
                    target = _absolute(p, node)
                    if not (target.startswith("gnsel.gradnorm") or target == "gnsel.registry"):
                        found.setdefault(str(p.relative_to(SRC)), []).append(target)
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                if name.split(".")[0] not in allowed:
                    found.setdefault(p.name, []).append(name)
    assert not found, found


# ----------------------------------------------------------------------------- the registry idiom
def test_registry_registers_lists_and_names_the_choices() -> None:
    things: Registry[object] = Registry("widget")

    @things.register("b")
    def b() -> None: ...

    things.register("a", 42)
    assert things.names() == ["b", "a"] and things.get("a") == 42 and "b" in things and len(things) == 2
    with pytest.raises(UnknownNameError, match=r"^unknown widget 'c'; choices: b, a$") as err:
        things.get("c")
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    with pytest.raises(ValueError, match="already registered"):
        things.register("a", 43)
    things.register("a", 43, replace=True)
    assert things.get("a") == 43
    assert things.unregister("a") == 43 and things.names() == ["b"]


def test_registry_keyed_by_type_lists_class_names() -> None:
    rules: Registry[str] = Registry("layer rule")
    rules.register(int, "i")
    assert rules.names() == ["int"] and rules.get(int) == "i"
    with pytest.raises(UnknownNameError, match="unknown layer rule 'float'"):
        rules.get(float)


def test_every_kind_of_thing_has_one_registry_of_the_same_idiom() -> None:
    """Layer rules, losses, datasets, models, measures, search algorithms and study parts: each one
    :class:`gnsel.registry.Registry`, filled by its decorator, that lists its entries."""
    from torch import nn

    from gnsel.data.registry import DATASETS
    from gnsel.gradnorm.losses import LOSSES
    from gnsel.gradnorm.rules import RULES
    from gnsel.measures.registry import MEASURES
    from gnsel.models import MODELS
    from gnsel.study import PARTS
    from gnsel.tune.algorithms import ALGORITHMS

    expected = {
        RULES: nn.Linear, LOSSES: "cross_entropy", DATASETS: "mnist1d", MODELS: "mlp", MEASURES: "gn_full",
        ALGORITHMS: "bohb", PARTS: "correlation",
    }  # fmt: skip
    for registry, member in expected.items():
        assert isinstance(registry, Registry), registry
        assert member in registry and registry.get(member) is not None
        assert len(registry.names()) == len(registry) >= 1
        with pytest.raises(UnknownNameError, match=f"unknown {registry.kind} 'nope'; choices: "):
            registry.get("nope")
