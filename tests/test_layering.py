"""The import diagram (tests/support/layering.py), the size budgets of the inference and app
code, and no import-time side effects; each checker is shown to fail on a planted violation."""

import ast
from pathlib import Path

from tests.support.layering import imports, modules, violations

REPO = Path(__file__).resolve().parents[1]

# Functions and classes over budget, each with the reason it stays whole.
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 250
OVER_BUDGET: dict[str, str] = {}


def test_import_layering():
    errors = violations(REPO)
    assert not errors, "\n".join(errors)


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_layering_sees_relative_imports_and_fails_on_a_violation(tmp_path):
    root = _plant(
        tmp_path,
        {
            "osprey/__init__.py": "",
            "osprey/model/__init__.py": "",
            "osprey/model/osprey.py": "from ..pipeline import Osprey\n",  # upwards, relative
            "osprey/eval/__init__.py": "",
            "osprey/eval/cli.py": "from .common import x\nfrom . import metrics\n",
            "sam_bridge/__init__.py": "",
            "sam_bridge/predictor.py": "from osprey.pipeline import Osprey\nimport gradio\n",
            "app.py": "import sam_bridge\nimport gradio\n",
        },
    )
    assert imports("osprey.eval.cli", root / "osprey/eval/cli.py") >= {
        "osprey.eval.common", "osprey.eval.metrics",
    }  # fmt: skip
    assert imports("osprey.model/", root / "osprey/model/__init__.py") == set()
    found = violations(root)
    assert "osprey.model.osprey imports osprey.pipeline" in found
    assert "sam_bridge.predictor imports osprey.pipeline" in found
    assert "sam_bridge.predictor imports gradio" in found
    assert not [v for v in found if v.startswith(("app ", "osprey.eval"))]


def _too_long(path: Path, root: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            limit = MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else MAX_FUNCTION_LINES
            size = node.end_lineno - node.lineno + 1
            if size > limit:
                name = f"{path.relative_to(root).as_posix()}:{node.name}"
                out.append(f"{name} has {size} lines (budget {limit})")
    return out


def _budget_files(root: Path) -> list[Path]:
    return [
        root / "app.py",
        *sorted(root.glob("osprey/*.py")),
        *sorted(root.glob("sam_bridge/*.py")),
    ]


def test_size_budgets_of_the_inference_and_app_code():
    over = []
    for path in _budget_files(REPO):
        over += [
            line for line in _too_long(path, REPO) if line.split(" has ")[0] not in OVER_BUDGET
        ]
    assert not over, "\n".join(over)


def test_size_budget_fails_on_a_planted_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    path = _plant(tmp_path, {"osprey/big.py": f"def f():\n{body}\n"}) / "osprey/big.py"
    assert _too_long(path, tmp_path) == [
        f"osprey/big.py:f has {MAX_FUNCTION_LINES + 1} lines (budget 80)"
    ]


def test_no_import_time_side_effects():
    """Library modules define things; they don't parse arguments, print or load models at import."""
    bad = []
    for module, path in modules(REPO):
        if module.endswith("__main__") or module == "app":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                bad.append(f"{module}: top-level call {ast.unparse(node)[:60]}")
    assert not bad, "\n".join(bad)
