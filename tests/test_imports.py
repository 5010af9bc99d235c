"""The core's import rule (docs: issue 31, item 3): every module of ``qcrd_ray/`` imports what it depends on at its
top, and none of them pulls in ``ray``, ``vllm`` or ``deepspeed`` (the only packages imported late, in the
functions that need them), so the core runs and is tested without a cluster."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "qcrd_ray"
LATE_ONLY = ("ray", "vllm", "deepspeed")

# Run in a fresh interpreter: the modules earlier tests imported (ray among them) must not count.
IMPORT_ALL = f"""
import importlib, json, pkgutil, sys
import qcrd_ray
names = ["qcrd_ray"] + [m.name for m in pkgutil.walk_packages(qcrd_ray.__path__, prefix="qcrd_ray.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({{"modules": names, "loaded": [m for m in {LATE_ONLY!r} if m in sys.modules]}}))
"""


def test_importing_every_core_module_loads_no_ray_vllm_or_deepspeed():
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    files = [p.relative_to(ROOT).with_suffix("") for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"]
    expected = {".".join(f.parts) for f in files}
    assert expected <= set(result["modules"])  # the walk did reach every module, tasks/ included
    assert result["loaded"] == [], f"importing qcrd_ray loads {result['loaded']}: import them inside the function"


def _late_core_imports(path: Path) -> list[str]:
    """``file:line`` of every import of a ``qcrd_ray`` module (absolute or relative) inside a function of ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def visit(node: ast.AST, function: str | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        if function is not None and isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            else:
                modules = ["qcrd_ray" if node.level else node.module or ""]
            if any(m == "qcrd_ray" or m.startswith("qcrd_ray.") for m in modules):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} (in {function}): {ast.unparse(node)}")
        for child in ast.iter_child_nodes(node):
            visit(child, function)

    visit(tree, None)
    return found


def test_no_core_module_imports_a_core_module_inside_a_function():
    late = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _late_core_imports(path)]
    assert late == [], "qcrd_ray modules imported inside functions (import them at the top):\n" + "\n".join(late)
