"""The import DAG of house-style §3.3, checked by parsing imports (no module is executed)."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module prefix -> prefixes it must not import
FORBIDDEN = {
    "osprey.constants": ["osprey.", "sam_bridge"],
    "osprey.prompts": ["osprey.", "sam_bridge"],
    "osprey.config": ["osprey.model", "osprey.checkpoint", "osprey.pipeline", "osprey.service"],
    "osprey.model": [
        "osprey.checkpoint",
        "osprey.pipeline",
        "osprey.service",
        "osprey.conversation",
        "osprey.processor",
    ],
    "osprey.conversation": [
        "osprey.model",
        "osprey.checkpoint",
        "osprey.pipeline",
        "osprey.service",
    ],
    "osprey.processor": ["osprey.model", "osprey.checkpoint", "osprey.pipeline", "osprey.service"],
    "osprey.checkpoint": ["osprey.pipeline", "osprey.service"],
    "osprey.pipeline": ["osprey.service"],
    "osprey.data": ["osprey.train"],
    "sam_bridge": ["osprey"],
}
# nothing outside these packages may import them
LEAVES = ["osprey.train", "osprey.eval", "osprey.datagen"]


def _modules():
    for path in [*REPO.glob("osprey/**/*.py"), *REPO.glob("sam_bridge/**/*.py"), REPO / "app.py"]:
        if not path.is_file():
            continue
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _hits(name: str, prefixes: list[str]) -> bool:
    return any(
        name == p.rstrip(".") or name.startswith(p if p.endswith(".") else p + ".") or name == p
        for p in prefixes
    )


def test_import_layering():
    errors = []
    for module, path in _modules():
        imported = _imports(path)
        for owner, forbidden in FORBIDDEN.items():
            if module == owner or module.startswith(owner + "."):
                errors += [f"{module} imports {n}" for n in imported if _hits(n, forbidden)]
        for leaf in LEAVES:
            if not (module == leaf or module.startswith(leaf + ".")):
                errors += [f"{module} imports {n}" for n in imported if _hits(n, [leaf])]
    assert not errors, "\n".join(errors)


def test_no_import_time_side_effects():
    """Library modules define things; they don't parse arguments, print or load models at import."""
    bad = []
    for module, path in _modules():
        if module.endswith("__main__") or module == "app":
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
                bad.append(f"{module}: top-level call {ast.unparse(node)[:60]}")
    assert not bad, "\n".join(bad)
