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
                before = lines[node.lineno - 2] if node.lineno > 1 else ""
                if not (_WHY.search(here) or (before.strip().startswith("#") and _WHY.search(before))):
                    bad.append((node.lineno, here.strip()))
    return bad


def test_function_level_imports_say_why() -> None:
    """Function-level imports only for heavy or optional dependencies, each commented ``# heavy:`` or
    ``# optional:`` on its line or the line before."""
    bad = {str(p.relative_to(SRC)): b for p in _modules() if (b := _function_imports(p))}
    assert not bad, f"function-level imports without a comment saying why: {bad}"


def test_engine_imports_only_torch_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "__future__"}
    found = {}
    for p in sorted((SRC / "gradnorm").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: inside the engine, or gnsel.registry (stdlib only itself)
                    if node.level > 1 and (node.module or "").split(".")[0] not in ("registry",):
                        found.setdefault(p.name, []).append(f"{'.' * node.level}{node.module}")
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
