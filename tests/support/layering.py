"""The import rules of the project (the dependency diagram), checked by parsing imports with
``ast`` (nothing is executed), absolute and relative ones alike.

Layers, bottom to top:

* base: ``osprey.constants``, ``osprey.errors``, ``osprey.prompts``;
* utilities: ``osprey.images``, ``osprey.masks``, ``osprey.cache``, ``osprey.devices``,
  ``osprey.options``, ``osprey.vocabulary``, ``osprey.priority`` (standard library, numpy,
  PIL, pycocotools, torch; no model code);
* ``sam_bridge``: SAM; it may use the base and utilities of ``osprey`` and nothing else of it;
* the model: ``osprey.config``, ``osprey.model``, then ``osprey.conversation`` /
  ``osprey.processor`` / ``osprey.checkpoint``, then ``osprey.features`` / ``osprey.generation``
  / ``osprey.loading``, then ``osprey.classify`` (over the generator), then the facade
  ``osprey.pipeline``;
* the app: ``osprey.session`` (data) <- ``osprey.viz`` (drawing) <- ``osprey.service`` (and
  beside it ``osprey.topk``, top-k classes) <- ``osprey.api`` <- ``app``. Only ``app``
  composes SAM and Osprey; only ``app`` and ``osprey.api`` import gradio;
* leaves: ``osprey.train``, ``osprey.eval``, ``osprey.datagen``, ``osprey.label`` (nothing
  imports them); ``osprey.label`` composes SAM and Osprey like ``app``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

UTILITIES = [
    "osprey.images", "osprey.masks", "osprey.cache", "osprey.devices", "osprey.options",
    "osprey.vocabulary", "osprey.priority", "osprey.memory",
]  # fmt: skip
BASE = ["osprey.constants", "osprey.errors", "osprey.prompts"]
APP_LAYER = [
    "osprey.session", "osprey.viz", "osprey.service", "osprey.topk", "osprey.api", "app",
    "osprey.uploads", "osprey.api_gate",
]  # fmt: skip
INFERENCE = [
    "osprey.features", "osprey.generation", "osprey.engine", "osprey.classify", "osprey.loading",
    "osprey.pipeline",
]  # fmt: skip

# module prefix -> import prefixes it must not use
FORBIDDEN: dict[str, list[str]] = {
    "osprey.constants": ["osprey", "sam_bridge", "torch"],
    "osprey.errors": ["osprey", "sam_bridge", "torch"],
    "osprey.prompts": ["osprey", "sam_bridge", "torch"],
    "osprey.options": ["osprey.model", "osprey.pipeline", "sam_bridge", "torch", "gradio"],
    **{
        m: ["osprey.model", "osprey.checkpoint", "osprey.pipeline", *APP_LAYER, *INFERENCE]
        for m in [
            "osprey.images",
            "osprey.masks",
            "osprey.cache",
            "osprey.devices",
            "osprey.priority",
            "osprey.memory",
        ]
    },
    "osprey.vocabulary": ["osprey.model", "osprey.conversation", *INFERENCE, *APP_LAYER, "torch"],
    "osprey.config": ["osprey.model", "osprey.checkpoint", *INFERENCE, *APP_LAYER],
    "osprey.model": [
        "osprey.checkpoint",
        "osprey.conversation",
        "osprey.processor",
        *INFERENCE,
        *APP_LAYER,
    ],
    "osprey.conversation": ["osprey.model", "osprey.checkpoint", *INFERENCE, *APP_LAYER],
    "osprey.processor": ["osprey.model", "osprey.checkpoint", *INFERENCE, *APP_LAYER],
    "osprey.checkpoint": [*INFERENCE, *APP_LAYER],
    "osprey.features": ["osprey.generation", "osprey.loading", "osprey.pipeline", *APP_LAYER],
    "osprey.generation": [
        "osprey.features",
        "osprey.classify",
        "osprey.loading",
        "osprey.pipeline",
        *APP_LAYER,
    ],
    "osprey.classify": ["osprey.features", "osprey.loading", "osprey.pipeline", *APP_LAYER],
    "osprey.loading": ["osprey.features", "osprey.generation", "osprey.pipeline", *APP_LAYER],
    "osprey.engine": [
        "osprey.features",
        "osprey.generation",
        "osprey.classify",
        "osprey.loading",
        "osprey.pipeline",
        *APP_LAYER,
    ],
    "osprey.hardware": ["osprey.model", "osprey.checkpoint", *INFERENCE, *APP_LAYER],
    "osprey.pipeline": APP_LAYER,
    "osprey.session": [
        "osprey.model",
        "osprey.pipeline",
        "osprey.viz",
        "osprey.service",
        "osprey.api",
        "torch",
    ],
    "osprey.viz": ["osprey.model", "osprey.pipeline", "osprey.service", "osprey.api", "torch"],
    "osprey.service": ["osprey.api", "osprey.topk", "app", "gradio"],
    "osprey.topk": ["osprey.service", "osprey.api", "app", "gradio", "sam_bridge"],
    "osprey.api": ["app"],
    "osprey.data": ["osprey.train"],
}
# Nothing outside these packages may import them.
LEAVES = ["osprey.train", "osprey.eval", "osprey.datagen", "osprey.label"]
# Only these may import sam_bridge (they compose SAM with Osprey) or gradio.
SAM_USERS = ["app", "sam_bridge", "osprey.label"]
GRADIO_USERS = [
    "app",
    "osprey.api",
    "osprey.canvas",  # the canvas is a gr.HTML component (its page: osprey/static/canvas.js)
    "osprey.uploads",  # Gradio's upload folder: where a visitor's files may come from
    "osprey.api_gate",  # the API's front gate reads the endpoints' Gradio types
]
# What sam_bridge may use of osprey.
SAM_ALLOWED = [*BASE, *UTILITIES]


def modules(root: Path) -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every module of the project under ``root``."""
    paths = [*root.glob("osprey/**/*.py"), *root.glob("sam_bridge/**/*.py"), root / "app.py"]
    for path in sorted(p for p in paths if p.is_file()):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts) + ("/" if is_package else ""), path


def imports(module: str, path: Path) -> set[str]:
    """Every module name ``path`` imports, relative imports resolved against ``module`` (a
    trailing ``/`` marks a package's ``__init__``)."""
    is_package = module.endswith("/")
    package = module.rstrip("/").split(".")
    if not is_package:
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            else:
                target = node.module or ""
            names.add(target)
            names |= {f"{target}.{a.name}" for a in node.names}  # `from pkg import module`
    return names


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """Every import of the tree under ``root`` that breaks a rule above, as readable lines."""
    errors = []
    for module, path in modules(root):
        name = module.rstrip("/")
        for imported in sorted(imports(module, path)):
            errors += [f"{name} imports {imported}" for why in _broken(name, imported) if why]
    return errors


def _broken(module: str, imported: str) -> Iterator[bool]:
    for owner, forbidden in FORBIDDEN.items():
        if _under(module, owner):
            yield any(_under(imported, f) for f in forbidden)
    for leaf in LEAVES:
        yield _under(imported, leaf) and not _under(module, leaf)
    yield _under(imported, "sam_bridge") and not any(_under(module, m) for m in SAM_USERS)
    yield _under(imported, "gradio") and not any(_under(module, m) for m in GRADIO_USERS)
    if _under(module, "sam_bridge") and _under(imported, "osprey"):
        yield not any(_under(imported, a) for a in SAM_ALLOWED) and imported != "osprey"
