"""The typed model of each exchanged file: every schema-valid document reads into its model and
back unchanged, to the byte, and every model makes a schema-valid document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from series_selection.common.jsonio import json_text, schema_errors
from series_selection.common.models import (
    METADATA_FILE,
    SELECTED_IMAGES_FILE,
    SERIES_IMAGES_FILE,
    ChosenSeries,
    DicomMetadata,
    ImageEntry,
    Instance,
    Rescale,
    SelectedImages,
    SelectionImages,
    Series,
    SeriesImages,
    Study,
    VolumeEntry,
)
from series_selection.parser import parse_folder
from series_selection.selector.cli import main as selector_main

SAMPLES = Path(__file__).resolve().parent.parent / "samples"

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=8)
UID = st.from_regex(r"[12]\.[0-9]{1,3}(\.[0-9]{1,5}){1,4}", fullmatch=True)
PATH = st.from_regex(r"[a-zé_]{1,6}(/[a-z0-9\u00fc_]{1,6}){0,2}\.dcm", fullmatch=True)
NUMBER = st.integers(-(2**31), 2**31) | st.floats(allow_nan=False, allow_infinity=False)
ELEMENT = st.one_of(
    st.builds(lambda v: {"vr": "CS", "Value": v}, st.lists(TEXT, max_size=3)),
    st.builds(lambda v: {"vr": "DS", "Value": v}, st.lists(NUMBER, max_size=3)),
    st.builds(lambda v: {"vr": "PN", "Value": [{"Alphabetic": v}]}, TEXT),
    st.just({"vr": "OB", "BulkDataURI": "a.dcm#7FE00010"}),
    st.just({"vr": "LO"}),
)
SEQUENCE = st.builds(
    lambda items: {"vr": "SQ", "Value": items},
    st.lists(st.dictionaries(st.from_regex(r"[0-9A-F]{8}", fullmatch=True), ELEMENT), max_size=2),
)


def dataset(required: str | None = None) -> st.SearchStrategy[dict[str, Any]]:
    keys = st.from_regex(r"00[0-9A-F]{6}", fullmatch=True)
    made = st.dictionaries(keys, ELEMENT | SEQUENCE, max_size=5)
    if required is None:
        return made
    return st.builds(lambda d, uid: {**d, required: {"vr": "UI", "Value": [uid]}}, made, UID)


INSTANCES = st.builds(Instance, path=PATH, attributes=dataset("00080018"))
SERIES = st.builds(
    Series,
    attributes=dataset("0020000E"),
    instances=st.lists(INSTANCES, min_size=1, max_size=3).map(tuple),
)
STUDIES = st.builds(
    Study, attributes=dataset("0020000D"), series=st.lists(SERIES, max_size=3).map(tuple)
)
METADATA = st.builds(DicomMetadata, studies=st.lists(STUDIES, max_size=3).map(tuple))

SPACING = st.floats(min_value=0.01, max_value=10)
VECTOR = st.tuples(NUMBER, NUMBER, NUMBER)
VOLUMES = st.builds(
    VolumeEntry,
    path=PATH.map(lambda p: p.replace(".dcm", ".nii.gz")),
    format=st.sampled_from(["nii", "nii.gz", "mhd"]),
    label=TEXT,
    distinguished_by=st.dictionaries(TEXT, NUMBER | TEXT, max_size=2),
    shape=st.lists(st.integers(1, 512), min_size=3, max_size=4).map(tuple),
    spacing=st.tuples(SPACING, SPACING, SPACING),
    origin=VECTOR,
    direction=st.tuples(VECTOR, VECTOR, VECTOR),
    orientation=st.sampled_from(["AXIAL", "CORONAL", "SAGITTAL", "OBLIQUE"]),
    dtype=st.sampled_from(["int16", "uint8", "float32"]),
    rescale=st.builds(
        Rescale,
        slope=st.none() | NUMBER,
        intercept=st.none() | NUMBER,
        stored_as=st.sampled_from(["applied", "nifti_scl", "identity"]),
    ),
    instance_count=st.integers(1, 1000),
    frame_count=st.integers(1, 1000),
    channels=st.sampled_from([1, 3]),
    resampled=st.none() | TEXT,
    notes=st.lists(TEXT, max_size=2).map(tuple),
    study_instance_uid=UID,
)
SERIES_IMAGES = st.builds(
    SeriesImages,
    volumes=st.dictionaries(UID, st.lists(VOLUMES, min_size=1, max_size=2).map(tuple), max_size=3),
)

IMAGES = st.builds(
    ImageEntry,
    path=PATH.map(lambda p: p.replace(".dcm", ".mhd")),
    format=st.sampled_from(["nii", "nii.gz", "mhd"]),
    label=TEXT,
    shape=st.lists(st.integers(1, 512), min_size=3, max_size=4).map(tuple),
    spacing=st.tuples(SPACING, SPACING, SPACING),
    orientation=st.sampled_from(["AXIAL", "CORONAL", "SAGITTAL", "OBLIQUE"]),
    dtype=st.sampled_from(["int16", "uint8", "float32"]),
    channels=st.sampled_from([1, 3]),
)
CHOSEN = st.builds(
    ChosenSeries,
    study_instance_uid=UID,
    series_instance_uid=UID,
    series_number=st.none() | st.integers(0, 9999) | TEXT,
    series_description=st.none() | TEXT,
    modality=st.none() | st.sampled_from(["CT", "MR"]),
    instance_count=st.integers(1, 1000),
    images=st.lists(IMAGES, min_size=1, max_size=2).map(tuple),
)


@st.composite
def selected_images(draw: st.DrawFn) -> SelectedImages:
    """Selections that may share a chosen series, as the selector makes them."""
    pool = draw(st.lists(CHOSEN, min_size=1, max_size=4))
    selections = draw(
        st.lists(st.tuples(TEXT, st.lists(st.sampled_from(pool), max_size=3)), max_size=3)
    )
    return SelectedImages(tuple(SelectionImages(n, tuple(s)) for n, s in selections))


MODELS = [
    (METADATA, DicomMetadata, "dicom-metadata"),
    (SERIES_IMAGES, SeriesImages, "series-images"),
    (selected_images(), SelectedImages, "selected-images"),
]


@pytest.mark.parametrize(("models", "model", "schema"), MODELS, ids=[m[2] for m in MODELS])
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_each_model_makes_a_valid_document_and_reads_it_back(
    models: st.SearchStrategy[Any], model: Any, schema: str, data: st.DataObject
) -> None:
    made = data.draw(models)
    document = made.to_json()
    assert schema_errors(document, schema) == []
    assert model.from_json(document) == made
    text = json_text(document)
    assert model.from_json(json.loads(text)) == made
    assert json_text(model.from_json(json.loads(text)).to_json()) == text


def test_a_series_chosen_twice_is_one_entry_listed_twice() -> None:
    image = ImageEntry("v.nii.gz", "nii.gz", "", (2, 2, 2), (1.0, 1.0, 1.0), "AXIAL", "int16", 1)
    chosen = ChosenSeries("1.2", "1.2.3", 3, "Body", "CT", 2, (image,))
    document = SelectedImages(
        (SelectionImages("a", (chosen,)), SelectionImages("b", (chosen,)))
    ).to_json()
    first, second = (s["series"][0] for s in document["selections"])
    assert first is second
    assert json_text(document, reuse=True) == json_text(json.loads(json.dumps(document)))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The parser's and the selector's files for each sample study."""
    folders = []
    for sample in ("ct-abdomen", "mr-brain"):
        root = tmp_path_factory.mktemp(sample)
        parse_folder(SAMPLES / sample, root / "parsed", "nii", workers=1)
        assert selector_main(["--input", str(root / "parsed"), "--output", str(root / "sel")]) == 0
        folders.append(root)
    return folders


@pytest.mark.parametrize(
    ("file", "model"),
    [
        (f"parsed/{METADATA_FILE}", DicomMetadata),
        (f"parsed/{SERIES_IMAGES_FILE}", SeriesImages),
        (f"sel/{SELECTED_IMAGES_FILE}", SelectedImages),
    ],
)
def test_the_files_the_operators_write_read_back_to_the_byte(
    outputs: list[Path], file: str, model: Any
) -> None:
    for root in outputs:
        text = (root / file).read_text(encoding="utf-8")
        document = json.loads(text)
        assert model.from_json(document).to_json() == document
        assert json_text(model.from_json(document).to_json()) + "\n" == text
