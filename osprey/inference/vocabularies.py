"""Class vocabularies: the built-in lists (package data in ``osprey/inference/vocab/``, each file names its
source) and user lists, checked as untrusted input.

A :class:`Vocabulary` is a tuple of classes; a class is one or more names (synonyms), the first
being the name shown. Built-in files hold one class per line, synonyms separated by commas, and
``#`` comment lines. A user list is one class per name: comma- or newline-separated text, or a
file with one name per line. User names are cleaned (whitespace collapsed), deduplicated (case
does not make a new name) and rejected with a :class:`VocabularyError` saying what is wrong:
empty, too long, control characters, the prompt's special tokens, or too many names.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from osprey.core.errors import OspreyError

BUILTIN = {
    "coco": "COCO 2017, 80 thing classes",
    "lvis": "LVIS v1, 1,203 classes",
    "ade20k": "ADE20K-150 with FC-CLIP's synonyms",
    "cityscapes": "Cityscapes, 19 classes with FC-CLIP's synonyms",
    "paco": "PACO-LVIS, 75 objects and 456 object:part classes",
}
MAX_NAMES = 2000  # scoring cost grows with the names; LVIS (1,203) fits
MAX_NAME_CHARS = 80
MAX_TOP_K = 50  # classes a user may ask to see per region (app, API, labeller)
MAX_FILE_BYTES = 1 << 20
# Text that would change the prompt instead of being an answer.
_SPECIAL = ("<image>", "<mask>", "<pos>", "<s>", "</s>", "<unk>")


class VocabularyError(OspreyError, ValueError):
    """A vocabulary cannot be used: unknown name, unreadable file, or a bad entry."""


@dataclass(frozen=True)
class Vocabulary:
    """``classes[k]``: the names of class k (the first is the one shown). ``source`` says where
    the list comes from."""

    name: str
    classes: tuple[tuple[str, ...], ...]
    source: str = ""

    @property
    def names(self) -> list[str]:
        """The shown name of every class, in order."""
        return [c[0] for c in self.classes]

    @property
    def candidates(self) -> list[str]:
        """Every name to score: all synonyms of class 0, then of class 1, ..."""
        return [n for c in self.classes for n in c]

    @property
    def owners(self) -> list[int]:
        """The class of each of :attr:`candidates`."""
        return [k for k, c in enumerate(self.classes) for _ in c]

    def __len__(self) -> int:
        return len(self.classes)


# ---------------------------------------------------------------------------------------------
# user names


def clean_name(raw: str, where: str = "") -> str:
    """One user name, whitespace collapsed; :class:`VocabularyError` if it cannot be a class."""
    at = f" ({where})" if where else ""
    if any(unicodedata.category(ch).startswith("C") for ch in raw if ch not in "\t\r\n"):
        raise VocabularyError(f"a class name contains a control character{at}: {raw[:40]!r}")
    name = " ".join(raw.split())
    if not name:
        raise VocabularyError(f"a class name is empty{at}")
    if len(name) > MAX_NAME_CHARS:
        raise VocabularyError(
            f"a class name is longer than {MAX_NAME_CHARS} characters{at}: {name[:40]!r}..."
        )
    if any(s in name for s in _SPECIAL):
        raise VocabularyError(f"a class name may not contain {', '.join(_SPECIAL)}{at}: {name!r}")
    return name


def from_names(names: Iterable[str], name: str = "custom", source: str = "") -> Vocabulary:
    """A vocabulary of one class per name, cleaned and deduplicated (first spelling kept)."""
    seen: set[str] = set()
    classes = []
    for i, raw in enumerate(names):
        if not isinstance(raw, str):
            raise VocabularyError(f"class name {i + 1} is not text")
        clean = clean_name(raw, f"entry {i + 1}")
        if clean.casefold() not in seen:
            seen.add(clean.casefold())
            classes.append((clean,))
        if len(classes) > MAX_NAMES:
            raise VocabularyError(f"a vocabulary holds at most {MAX_NAMES} names")
    if not classes:
        raise VocabularyError("the vocabulary is empty: give at least one class name")
    return Vocabulary(name, tuple(classes), source or "given by the user")


def parse_text(text: str) -> Vocabulary:
    """Names separated by commas or newlines (``"dog, cat, traffic light"``); blank lines and a
    comma at the end of a line are allowed, an empty entry between two commas is an error."""
    if not isinstance(text, str):
        raise VocabularyError("the vocabulary must be text")
    if len(text) > MAX_NAMES * (MAX_NAME_CHARS + 2):
        raise VocabularyError(f"the vocabulary text is too long (at most {MAX_NAMES} names)")
    lines = [ln.strip() for ln in text.removeprefix("\ufeff").splitlines() if ln.strip()]
    return from_names([name for ln in lines for name in ln.removesuffix(",").split(",")])


def read_file(path: str | Path) -> Vocabulary:
    """A user file: one name per line (blank lines and ``#`` comment lines skipped), UTF-8."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise VocabularyError(f"{path}: a vocabulary file is at most {MAX_FILE_BYTES} bytes")
        text = path.read_text(
            encoding="utf-8-sig"
        )  # a byte-order mark (Windows editors) is not a name
    except UnicodeDecodeError as exc:
        raise VocabularyError(f"{path} is not UTF-8 text") from exc
    except OSError as exc:
        raise VocabularyError(f"cannot read the vocabulary file {path}: {exc.strerror}") from exc
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return from_names(lines, path.stem, f"file {path.name}")


# ---------------------------------------------------------------------------------------------
# built-in lists


@functools.cache
def builtin(name: str) -> Vocabulary:
    """A built-in vocabulary (:data:`BUILTIN`), read from ``osprey/inference/vocab/<name>.txt``; its source
    is the header's ``Source:`` sentence."""
    if name not in BUILTIN:
        raise VocabularyError(f"unknown vocabulary {name!r}; built-in: {', '.join(BUILTIN)}")
    text = (
        resources.files("osprey.inference")
        .joinpath("vocab", f"{name}.txt")
        .read_text(encoding="utf-8")
    )
    lines = text.splitlines()
    header = " ".join(ln.lstrip("#").strip() for ln in lines if ln.startswith("#"))
    source = header.partition("Source:")[2].partition("Format:")[0].strip()
    classes = tuple(
        tuple(s.strip() for s in ln.split(",")) for ln in lines if ln and not ln.startswith("#")
    )
    return Vocabulary(name, classes, source)


def resolve(spec: str | Sequence[str] | Vocabulary, *, files: bool = False) -> Vocabulary:
    """A vocabulary from what a user gave: a :class:`Vocabulary`; a list of names; a built-in name
    (``lvis``, ``coco``, ...); with ``files=True`` (the command line only, never a remote user) a
    path to a file; else comma-separated names. A single word that is neither is an error (a
    mistyped built-in name must not silently become a one-class vocabulary)."""
    if isinstance(spec, Vocabulary):
        return spec
    if not isinstance(spec, str):
        return from_names(spec)
    key = spec.removeprefix("\ufeff").strip()
    if not key:
        raise VocabularyError("the vocabulary is empty: give a built-in name or class names")
    if key.lower() in BUILTIN:
        return builtin(key.lower())
    if files and Path(key).is_file():
        return read_file(key)
    if "," not in key and "\n" not in key:
        hint = ", a file" if files else ""
        raise VocabularyError(
            f"unknown vocabulary {key[:40]!r}: give a built-in name ({', '.join(BUILTIN)})"
            f"{hint} or several comma-separated class names"
        )
    return parse_text(key)
