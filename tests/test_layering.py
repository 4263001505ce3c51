"""The import diagram (tests/support/layering.py), the size budgets of the inference and app
code, and no import-time side effects; each checker is shown to fail on a planted violation."""

import ast
from pathlib import Path

from tests.support.layering import imports, modules, violations

REPO = Path(__file__).resolve().parents[1]

# Functions and classes over budget, each with the reason it stays whole.
MAX_FUNCTION_LINES = 80
MAX_CLASS_LINES = 250
LAYERS = ("core", "model", "inference", "app")
# Python files at osprey/'s top level: the package and `python -m osprey` (the command line).
TOP_LEVEL = {"__init__.py", "__main__.py"}
MAX_APP_PY_LINES = 100
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
            "osprey/model/osprey.py": "from ..inference.facade import Osprey\n",  # upwards
            "osprey/eval/__init__.py": "",
            "osprey/eval/cli.py": "from .common import x\nfrom . import metrics\n",
            "sam_bridge/__init__.py": "",
            "sam_bridge/predictor.py": "from osprey.inference.facade import Osprey\nimport gradio\n",
            "app.py": "import sam_bridge\nimport gradio\n",
        },
    )
    assert imports("osprey.eval.cli", root / "osprey/eval/cli.py") >= {
        "osprey.eval.common", "osprey.eval.metrics",
    }  # fmt: skip
    assert imports("osprey.model/", root / "osprey/model/__init__.py") == set()
    found = violations(root)
    assert "osprey.model.osprey imports osprey.inference.facade" in found
    assert "sam_bridge.predictor imports osprey.inference.facade" in found
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
        *(p for layer in LAYERS for p in sorted(root.glob(f"osprey/{layer}/*.py"))),
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


def test_the_tree_is_the_diagram():
    """osprey/ holds its package files and its folders; every folder says what it owns."""
    top = {p.name for p in (REPO / "osprey").glob("*.py")}
    assert top == TOP_LEVEL, f"modules at osprey/'s top level: {sorted(top - TOP_LEVEL)}"
    for folder in sorted(
        p for p in (REPO / "osprey").iterdir() if p.is_dir() and p.name != "__pycache__"
    ):
        if not any(folder.glob("*.py")):
            continue  # data folders (vocabularies, static files)
        init = folder / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text())) if init.is_file() else None
        assert doc and len(doc) > 40, (
            f"{folder.name}/__init__.py has no docstring saying what it owns"
        )
    lines = len((REPO / "app.py").read_text().splitlines())
    assert lines <= MAX_APP_PY_LINES, f"app.py has {lines} lines"


def test_no_import_circle():
    """No module of the tree imports (directly or through others) a module that imports it."""
    names = {m.rstrip("/"): p for m, p in modules(REPO)}
    graph = {}
    for module, path in modules(REPO):
        name = module.rstrip("/")
        graph[name] = {i for i in imports(module, path) if i in names and i != name}
    assert _cycles(graph) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_circle_check_finds_a_planted_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
