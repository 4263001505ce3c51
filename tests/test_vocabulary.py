"""Built-in vocabularies (package data with named sources) and user lists checked as untrusted
input (osprey/inference/vocabularies.py)."""

import pytest

from osprey.inference import vocabularies as V
from osprey.inference.vocabularies import VocabularyError


@pytest.mark.parametrize(
    "name,count,first,last",
    [
        ("coco", 80, "person", "toothbrush"),
        ("lvis", 1203, "aerosol can", "zucchini"),
        ("ade20k", 150, "wall", "flag"),
        ("cityscapes", 19, "road", "bicycle"),
        ("paco", 531, "trash can", "handbag:zip"),
    ],
)
def test_builtin_vocabularies_have_their_published_sizes(name, count, first, last):
    v = V.builtin(name)
    assert len(v) == count and v.names[0] == first and v.names[-1] == last
    assert "github" in v.source or "facebookresearch/" in v.source  # where the names come from
    names = [n.casefold() for n in v.names]
    assert len(set(names)) == count  # no duplicate classes
    for n in v.candidates:
        assert n == V.clean_name(n)  # every built-in name passes the user checks too


def test_synonyms_and_names_of_the_segmentation_vocabularies():
    city = V.builtin("cityscapes")
    assert city.classes[13] == ("car", "cars") and city.names[11] == "person"
    ade = V.builtin("ade20k")
    assert ade.classes[0][:2] == ("wall", "walls") and len(ade.candidates) > 150
    assert ade.owners[: len(ade.classes[0]) + 1] == [0] * len(ade.classes[0]) + [1]
    paco = V.builtin("paco")
    assert sum(":" in n for n in paco.names) == 456  # object:part names
    assert "car (automobile):antenna" in paco.names
    lvis = V.builtin("lvis")
    assert "monitor (computer equipment) computer monitor" in lvis.names  # LVIS' own spelling
    assert "_" not in "".join(lvis.names)


def test_user_text_is_split_cleaned_and_deduplicated():
    v = V.parse_text("dog, Cat,\n\n  traffic   light ,dog,CAT,")
    assert v.names == ["dog", "Cat", "traffic light"]
    assert all(len(c) == 1 for c in v.classes) and v.name == "custom"
    assert V.resolve(" LVIS ") is V.builtin("lvis")
    assert V.resolve(["a", "b"]).names == ["a", "b"]
    assert V.resolve(v) is v


@pytest.mark.parametrize(
    "text,message",
    [
        ("dog, , cat", r"empty \(entry 2\)"),
        ("dog,,", r"empty \(entry 2\)"),
        ("  ", "the vocabulary is empty"),
        ("dog, c\x00at", "control character"),
        ("dog, cat\x1b[31m", "control character"),
        ("dog, " + "x" * 81, "longer than 80"),
        ("dog, cat</s>", "may not contain"),
        ("dog, <mask><pos>", "may not contain"),
        (",".join(f"n{i}" for i in range(2001)), "at most 2000"),
        ("lvsi", "unknown vocabulary 'lvsi'"),
        ("x" * 1_000_000 + ",y", "too long"),
    ],
)
def test_bad_user_lists_are_rejected_with_a_clear_message(text, message):
    with pytest.raises(VocabularyError, match=message):
        V.resolve(text)


def test_a_file_has_one_name_per_line(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("# my classes\nhot dog, with mustard\n\nsandwich\n  sandwich \n")
    v = V.resolve(str(path), files=True)
    assert v.names == ["hot dog, with mustard", "sandwich"] and v.name == "mine"
    # a remote user's text is never opened as a file
    with pytest.raises(VocabularyError, match="unknown vocabulary"):
        V.resolve(str(path))
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"dog\n\xff\xfe\n")
    with pytest.raises(VocabularyError, match="not UTF-8"):
        V.resolve(str(bad), files=True)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(VocabularyError, match="empty"):
        V.read_file(empty)
    with pytest.raises(VocabularyError, match="cannot read"):
        V.read_file(tmp_path / "missing.txt")


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(VocabularyError, match="coco, lvis, ade20k, cityscapes, paco"):
        V.builtin("imagenet")
