"""Evaluation harness: ``python -m osprey.eval <benchmark> ...`` (see ``osprey/eval/__main__.py``).

Nothing in the library imports this package. Submodules load their heavy dependencies
(sentence-transformers, pycocoevalcap, openai) on first use, so importing it is cheap.
"""
