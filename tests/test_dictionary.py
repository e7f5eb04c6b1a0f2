"""The data dictionary by keyword: pydicom's own, read without importing pydicom."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.datadict import dictionary_VR, keyword_dict, tag_for_keyword

from selector_support import SeriesFixture, rules_json, write_parser_output
from series_selection.common.dictionary import keyword_entries, keyword_vr, tag_key


def test_every_keyword_has_pydicoms_tag_and_vr() -> None:
    assert keyword_entries().keys() == keyword_dict.keys() - {""}
    for keyword in keyword_entries():
        tag = keyword_dict[keyword]
        assert tag_key(keyword) == f"{tag_for_keyword(keyword):08X}"
        assert keyword_vr(keyword) == dictionary_VR(tag)


@pytest.mark.parametrize("word", ["Modalty", "modality", "", "(0008,0060)", "00080060"])
def test_a_word_that_is_no_keyword_has_no_entry(word: str) -> None:
    assert keyword_vr(word) is None
    with pytest.raises(KeyError, match="not a DICOM keyword"):
        tag_key(word)


RUN_AND_LIST_MODULES = """
import json, sys
from series_selection.selector.cli import main
code = main(sys.argv[1:])
slow = {"pydicom", "regex", "importlib.metadata"}
print(json.dumps([code, sorted(n for n in sys.modules if n in slow or n.split(".")[0] in slow)]))
"""


def test_a_selector_run_imports_no_module_it_does_not_need(tmp_path: Path) -> None:
    """pydicom's import (its pixel decoders and their libraries) would take most of the start;
    ``regex`` is for patterns RE2 refuses and ``importlib.metadata`` for ``--version`` (about
    10 ms each, a tenth of a small selection)."""
    fixture = SeriesFixture(series={"Modality": "CT", "SeriesNumber": 1})
    write_parser_output(tmp_path / "in", [fixture])
    rules = tmp_path / "rules.json"
    rules.write_text(rules_json({"name": "CT", "conditions": {"Modality": "CT"}}))
    arguments = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_LIST_MODULES, *arguments, "--rules", str(rules)],
        capture_output=True,
        text=True,
        check=True,
    )
    code, imported = json.loads(done.stdout.splitlines()[-1])
    assert code == 0, done.stderr
    assert (tmp_path / "out" / "selected-images.json").is_file()
    assert imported == []
