"""Class vocabularies of the open-vocabulary segmentation benchmarks.

The synonym lists are FC-CLIP's prompt-engineered class files that Osprey evaluates with
(``cityscapes_with_prompt_eng.txt``, ``ade20k_150_with_prompt_eng.txt``), kept as the built-in
vocabularies ``cityscapes`` and ``ade20k`` (``osprey/inference/vocab/*.txt``: one class per line in
contiguous-id order, its synonyms separated by commas). Each synonym is put into
:data:`TEMPLATE`; a class scores the best cosine over its synonyms.
"""

from __future__ import annotations

from osprey.inference.vocabularies import builtin

TEMPLATE = "There is a {} in the scene."


def synonyms(benchmark: str) -> list[list[str]]:
    """One synonym list per class of ``cityscapes`` or ``ade20k``, in contiguous-id order."""
    return [list(names) for names in builtin(benchmark).classes]
