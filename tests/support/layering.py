"""The import rules of the project (the dependency diagram: the folders), checked by parsing
imports with ``ast`` (nothing is executed), absolute and relative ones alike.

Layers, bottom to top, one folder each:

* ``osprey.core``: what everything may use (errors, constants, image intake, mask I/O, caches,
  options, priorities, the released prompt strings); it imports nothing else of ours;
* ``osprey.model``: the paper's boxes, the config, the checkpoint format, the tiny builders; over
  ``core``;
* ``osprey.inference``: from a name to answers (loading, preprocessing, the prompt format,
  generation, the engine, top-k, the ``Osprey`` facade); over ``core`` and ``model``;
* ``osprey.app``: the product around a person (session, service, page, HTTP API, serving); over
  all of the above; the only layer that imports gradio, and (its start-up only) ``sam_bridge``;
* the tools ``osprey.train``, ``osprey.eval``, ``osprey.datagen``, ``osprey.label`` and
  ``osprey.data``: over ``core``, ``model`` and ``inference``; nothing below imports them;
* ``sam_bridge``: SAM, beside ``osprey``; it uses ``osprey.core`` and nothing else of it.

Within the app the data (session) is below the drawing, the service below the HTTP API and the
page; within inference the facade is on top.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TOOLS = ["osprey.train", "osprey.eval", "osprey.datagen", "osprey.label", "osprey.data"]
UPPER_APP = ["osprey.app.http_api", "osprey.app.http_gate", "osprey.app.demo", "osprey.app.wiring",
             "osprey.app.handlers", "osprey.app.layout", "osprey.app.main", "osprey.app.serving",
             "osprey.app.startup", "osprey.app.video_api", "osprey.app.video_page",
             "osprey.app.canvas_component", "osprey.app.chips_component"]  # fmt: skip

# module prefix -> import prefixes it must not use
FORBIDDEN: dict[str, list[str]] = {
    "osprey.core": ["osprey.model", "osprey.inference", "osprey.app", *TOOLS],
    "osprey.core.errors": ["osprey", "torch"],
    "osprey.core.constants": ["osprey", "torch"],
    "osprey.core.prompt_strings": ["osprey", "torch"],
    "osprey.core.options": [
        "osprey.core.images",
        "osprey.core.masks",
        "osprey.core.devices",
        "torch",
        "gradio",
    ],
    "osprey.model": ["osprey.inference", "osprey.app", *TOOLS],
    "osprey.inference": ["osprey.app", *TOOLS],
    "osprey.inference.prompt_format": ["osprey.inference.generator", "osprey.inference.facade"],
    "osprey.inference.preprocess": ["osprey.inference.generator", "osprey.inference.facade"],
    "osprey.inference.generator": ["osprey.inference.facade", "osprey.inference.topk_scoring"],
    "osprey.inference.batching_engine": ["osprey.inference.facade", "osprey.inference.generator"],
    "osprey.inference.topk_scoring": ["osprey.inference.facade"],
    "osprey.app": [*TOOLS],
    "osprey.app.session": [
        "osprey.model",
        "osprey.inference",
        "osprey.app.drawing",
        "osprey.app.service",
        *UPPER_APP,
        "torch",
    ],
    "osprey.app.drawing": [
        "osprey.model",
        "osprey.inference",
        "osprey.app.service",
        *UPPER_APP,
        "torch",
    ],
    "osprey.app.service": ["osprey.app.top_classes", *UPPER_APP, "gradio"],
    "osprey.app.top_classes": ["osprey.app.service", *UPPER_APP, "gradio"],
    "osprey.app.mask_prompts": ["osprey.app.service", *UPPER_APP, "gradio", "torch"],
    "osprey.app.export": ["osprey.app.service", *UPPER_APP, "gradio"],
    # video: the data below the service, the service below the answers (Osprey) and the API
    "osprey.app.video_session": [
        "osprey.model",
        "osprey.inference",
        "osprey.app.drawing",
        "osprey.app.service",
        "osprey.app.video_service",
        *UPPER_APP,
        "torch",
    ],
    "osprey.app.video_service": [
        "osprey.model",
        "osprey.inference",
        "osprey.app.service",
        "osprey.app.video_answers",
        *UPPER_APP,
        "gradio",
        "torch",
    ],
    "osprey.app.video_export": [
        "osprey.app.service",
        "osprey.app.video_service",
        *UPPER_APP,
        "gradio",
        "torch",
    ],
    "osprey.app.video_answers": [*UPPER_APP, "gradio"],
    "osprey.app.everything": ["osprey.app.service", *UPPER_APP, "gradio"],
    "osprey.app.saved": ["osprey.app.service", *UPPER_APP, "gradio", "torch"],
    "osprey.app.canvas_page": ["osprey.app.service", *UPPER_APP, "gradio", "torch"],
    "osprey.data": ["osprey.train"],
}
# Nothing outside these packages may import them.
LEAVES = ["osprey.train", "osprey.eval", "osprey.datagen", "osprey.label"]
# Only these may import sam_bridge (they compose SAM with Osprey) or gradio.
SAM_USERS = ["app", "osprey.app.main", "osprey.app.startup", "osprey.app.video_cli", "sam_bridge",
             "osprey.label"]  # fmt: skip
GRADIO_USERS = ["app", "osprey.app"]
# What sam_bridge may use of osprey.
SAM_ALLOWED = ["osprey.core"]


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
