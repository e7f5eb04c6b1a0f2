"""series-report's page: valid HTML, every DICOM text escaped, identifiers hidden by default,
and, in a real browser (headless Chromium), every picture decoded and something drawn."""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import html5lib
import numpy as np
import pytest
from PIL import Image

from series_selection.common.jsonio import schema_errors
from series_selection.parser.run import parse_folder
from series_selection.report.cli import main as report_main
from series_selection.report.pictures import place_picture
from series_selection.selector.cli import main as selector_main
from series_selection_tools.samples.synthetic import StudySpec, ct_series, write_series

REPO = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
HOSTILE = "<script>alert('x')</script> & <b>bold</b>"


def run_report(parsed: Path, out: Path, selections: Path | None = None, *more: str) -> None:
    arguments = ["--input", str(parsed), "--output", str(out), *more]
    if selections is not None:
        arguments += ["--selections", str(selections)]
    assert report_main(arguments) == 0


@pytest.fixture(scope="module")
def sample_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Parser, selector (shipped CT rules) and report on the committed samples."""
    root = tmp_path_factory.mktemp("samples")
    parse_folder(REPO / "samples", root / "parsed", "nii.gz", workers=2)
    rules = REPO / "rules/ct-abdomen-axial.yaml"
    selected = root / "selected"
    arguments = ["--input", str(root / "parsed"), "--output", str(selected)]
    assert selector_main([*arguments, "--rules", str(rules)]) == 0
    run_report(root / "parsed", root / "report", selected)
    return root / "report"


def strictly_parsed(page: Path) -> Any:
    """The page's tree; html5lib's strict mode raises on any HTML5 parse error."""
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    return parser.parse(page.read_bytes(), transport_encoding="utf-8")


def test_the_sample_page_is_valid_html_and_report_json_matches_its_schema(
    sample_report: Path,
) -> None:
    tree = strictly_parsed(sample_report / "report.html")
    report = json.loads((sample_report / "report.json").read_text())
    assert schema_errors(report, "report") == []
    images = tree.findall(".//img")
    pictures = [
        path
        for study in report["studies"]
        for series in study["series"]
        for volume in series["volumes"]
        for path in volume["pictures"].values()
    ]
    assert sorted(img.get("src") for img in images) == sorted(pictures)
    assert all(img.get("alt") for img in images)
    assert tree.findall(".//script") == []  # nothing to run, nothing fetched
    for element in tree.iter():
        for attribute in ("src", "href"):
            value = element.get(attribute)
            assert value is None or "://" not in value, value


def test_the_sample_page_says_which_series_was_chosen_and_why_the_others_were_not(
    sample_report: Path,
) -> None:
    report = json.loads((sample_report / "report.json").read_text())
    (selection,) = report["selections"]
    assert [c["SeriesDescription"] for c in selection["chosen"]] == ["Portal venous 1.25mm"]
    series = {s["SeriesDescription"]: s for study in report["studies"] for s in study["series"]}
    (chosen,) = series["Portal venous 1.25mm"]["selections"]
    assert chosen["chosen"] and chosen["rank"] == 1 and chosen["why_not"] is None
    (thicker,) = series["Portal venous 5mm"]["selections"]
    assert thicker["rank"] == 2 and "better-ranked" in thicker["why_not"]
    (scout,) = series["Scout"]["selections"]
    assert scout["why_not"].startswith("ImageType: ")
    assert "No volume: no image data (SR)" in (sample_report / "report.html").read_text()
    text = (sample_report / "report.html").read_text()
    assert "chosen by CT abdomen axial" in text


def test_identifiers_are_shown_only_when_asked(sample_report: Path, tmp_path: Path) -> None:
    page = (sample_report / "report.html").read_text()
    assert "SYNTHETIC" not in page.replace("SYNTHETIC STUDY", "")  # no patient name
    parsed = sample_report.parent / "parsed"
    run_report(parsed, tmp_path / "shown", None, "--show-identifiers")
    shown = json.loads((tmp_path / "shown" / "report.json").read_text())
    assert shown["selections"] is None  # without the selector's output: no verdicts
    assert all("identifiers" in study for study in shown["studies"])
    assert "PatientName" in (tmp_path / "shown" / "report.html").read_text()


def test_dicom_text_is_escaped(tmp_path: Path) -> None:
    study = StudySpec(study_description=HOSTILE, patient_name="<img src=x onerror=alert(1)>")
    write_series(tmp_path / "dicom", ct_series(study=study, series_description=HOSTILE, slices=4))
    parse_folder(tmp_path / "dicom", tmp_path / "parsed", "nii.gz", workers=1)
    run_report(tmp_path / "parsed", tmp_path / "report", None, "--show-identifiers")
    page = tmp_path / "report" / "report.html"
    text = page.read_text()
    assert "<script>" not in text and "<b>" not in text and "<img src=x" not in text
    assert "&lt;script&gt;" in text
    tree = strictly_parsed(page)
    assert tree.findall(".//script") == [] and tree.findall(".//b") == []
    headings = ["".join(h.itertext()) for h in tree.findall(".//h3")]
    assert any(HOSTILE in heading for heading in headings)  # shown as text, whole
    assert all(img.get("onerror") is None for img in tree.findall(".//img"))


def test_values_nested_a_thousand_deep_are_shown_as_a_note(tmp_path: Path) -> None:
    """The DICOM JSON schema lets an element hold any JSON, and the decoders take about a
    thousand levels: selector and report name such a value instead of failing on it."""
    write_series(tmp_path / "dicom", ct_series(slices=3))
    parse_folder(tmp_path / "dicom", tmp_path / "parsed", "nii", workers=1, previews=False)
    metadata_file = tmp_path / "parsed" / "dicom-metadata.json"
    metadata = json.loads(metadata_file.read_text())
    (study,) = metadata["studies"]
    deep = {"vr": "LO", "Value": ["DEEP"]}
    study["attributes"].update(  # StudyDescription, StudyDate, PatientName, StudyInstanceUID
        {"00081030": deep, "00080020": deep, "00100010": deep, "0020000D": deep}
    )
    study["series"][0]["attributes"].update(  # SeriesDescription, Modality, ImageType
        {"0008103E": deep, "00080060": deep, "00080008": deep}
    )
    levels = 990
    text = json.dumps(metadata).replace('"DEEP"', "[" * levels + "1" + "]" * levels)
    metadata_file.write_text(text)
    rules = tmp_path / "rules.json"
    conditions = {"SeriesDescription": "x", "Modality": "CT", "StudyDescription": "y"}
    rules.write_text(json.dumps({"selections": [{"name": "s", "conditions": conditions}]}))
    arguments = ["--input", str(tmp_path / "parsed"), "--output", str(tmp_path / "selected")]
    assert selector_main([*arguments, "--rules", str(rules), "--explain"]) == 0
    report = tmp_path / "report"
    run_report(tmp_path / "parsed", report, tmp_path / "selected", "--show-identifiers")
    page = report / "report.html"
    assert page.read_text().count("(list nested too deeply to show)") >= 3
    strictly_parsed(page)


def test_a_volume_without_previews_is_listed_without_pictures(tmp_path: Path) -> None:
    write_series(tmp_path / "dicom", ct_series(slices=3))
    parse_folder(tmp_path / "dicom", tmp_path / "parsed", "nii", workers=1, previews=False)
    run_report(tmp_path / "parsed", tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    (volume,) = report["studies"][0]["series"][0]["volumes"]
    assert volume["pictures"] == {}
    assert "No pictures" in (tmp_path / "report" / "report.html").read_text()
    strictly_parsed(tmp_path / "report" / "report.html")


def test_a_picture_path_leaving_the_parsers_folder_is_refused(tmp_path: Path) -> None:
    write_series(tmp_path / "dicom", ct_series(slices=3))
    parse_folder(tmp_path / "dicom", tmp_path / "parsed", "nii", workers=1)
    picture = next((tmp_path / "parsed" / "previews").iterdir())
    picture.unlink()
    picture.symlink_to("/etc/hostname")
    arguments = ["--input", str(tmp_path / "parsed"), "--output", str(tmp_path / "report")]
    assert report_main(arguments) == 2
    assert not (tmp_path / "report" / "report.html").exists()


# --- a real browser -------------------------------------------------------------------------


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no headless browser installed ({', '.join(BROWSERS)}; CI installs chromium)")


class DevTools:
    """The Chrome DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
    messages ended by NUL): no network port, no extra library."""

    def __init__(self, browser: str, profile: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        arguments = [
            browser,
            "--headless",
            "--remote-debugging-pipe",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "about:blank",
        ]

        def onto_3_and_4() -> None:  # in the child, before the other descriptors are closed
            reading = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            writing = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self.process = subprocess.Popen(
            arguments,
            pass_fds=(3, 4),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=onto_3_and_4,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply["error"]
                result: dict[str, Any] = reply["result"]
                return result

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            assert chunk, "the browser closed its pipe"
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        reply: dict[str, Any] = json.loads(message)
        return reply

    def close(self) -> None:
        try:
            self.call("Browser.close")
        finally:
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            os.close(self._to_browser)
            os.close(self._from_browser)


LOADED = "location.protocol === 'file:' ? document.readyState : 'navigating'"
"""The page's state, once the new tab has left about:blank."""
IMAGES = (
    "JSON.stringify(Array.from(document.images, i => "
    "({src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth})))"
)


def browse(page: Path) -> tuple[list[dict[str, Any]], Image.Image]:
    """Load ``page`` from disk in headless Chromium: what the DOM says of every image, and a
    screenshot of the whole page."""
    browser = _browser()
    with tempfile.TemporaryDirectory() as profile:
        tools = DevTools(browser, Path(profile))
        try:
            target = tools.call("Target.createTarget", url=page.resolve().as_uri())["targetId"]
            session = tools.call("Target.attachToTarget", targetId=target, flatten=True)[
                "sessionId"
            ]
            deadline = time.monotonic() + 60
            while True:
                state = tools.call("Runtime.evaluate", session, expression=LOADED)["result"][
                    "value"
                ]
                if state == "complete" or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert state == "complete"
            images = json.loads(
                tools.call("Runtime.evaluate", session, expression=IMAGES)["result"]["value"]
            )
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                session,
                width=1280,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            shot = tools.call(
                "Page.captureScreenshot", session, format="png", captureBeyondViewport=True
            )["data"]
        finally:
            tools.close()
    return images, Image.open(io.BytesIO(base64.b64decode(shot))).convert("RGB")


def check_in_browser(page: Path, screenshot_to: Path | None = None) -> None:
    images, screenshot = browse(page)
    assert images, "the page shows pictures"
    broken = [image["src"] for image in images if not (image["complete"] and image["width"] > 0)]
    assert broken == [], f"pictures the browser could not decode: {broken}"
    if screenshot_to is not None:
        screenshot.save(screenshot_to)
    pixels = np.asarray(screenshot)
    assert pixels.std() > 10, "the screenshot is blank"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is nearly blank"
    dark = (pixels.max(axis=2) < 60).mean()
    assert dark > 0.01, "no picture (dark frames) drawn on the screenshot"


@pytest.mark.slow
def test_a_browser_decodes_every_picture_and_draws_the_page(
    sample_report: Path, tmp_path: Path
) -> None:
    check_in_browser(sample_report / "report.html", tmp_path / "screenshot.png")


def test_a_browser_shows_a_missing_picture_as_broken(sample_report: Path, tmp_path: Path) -> None:
    """The browser check itself: a picture that is not there is caught."""
    copy = tmp_path / "report"
    shutil.copytree(sample_report, copy)
    next((copy / "pictures").iterdir()).write_bytes(b"not a png")
    with pytest.raises(AssertionError, match="could not decode"):
        check_in_browser(copy / "report.html")


# --- real scanner data ----------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.slow
def test_all_of_the_shared_data_gets_a_valid_page(shared_data: Path, tmp_path: Path) -> None:
    """Every case at once (GE, Siemens, Philips, Hitachi; classic, enhanced, mosaic, 2D): one
    parse, one selection, one page, checked strictly and in a browser."""
    parsed, selected, report = tmp_path / "parsed", tmp_path / "selected", tmp_path / "report"
    parse_folder(shared_data, parsed, "nii", workers=2)
    assert selector_main(["--input", str(parsed), "--output", str(selected)]) == 0
    run_report(parsed, report, selected)
    strictly_parsed(report / "report.html")
    document = json.loads((report / "report.json").read_text())
    assert schema_errors(document, "report") == []
    series = [series for study in document["studies"] for series in study["series"]]
    volumes = json.loads((parsed / "series-images.json").read_text())
    assert len(series) > 40
    assert sum(len(s["volumes"]) for s in series) == sum(len(v) for v in volumes.values())
    pictures = [
        path for s in series for volume in s["volumes"] for path in volume["pictures"].values()
    ]
    for path in pictures:
        with Image.open(report / path) as picture:
            picture.verify()
    check_in_browser(report / "report.html")


def test_a_picture_listed_twice_is_placed_once(sample_report: Path, tmp_path: Path) -> None:
    """A SeriesInstanceUID wrongly reused in two studies lists its volumes, and pictures, in
    both."""
    parsed = sample_report.parent / "parsed"
    images = json.loads((parsed / "series-images.json").read_text())
    picture = next(p for vs in images.values() for v in vs for p in v["previews"].values())
    first = place_picture(parsed, picture, tmp_path / "staging")
    assert place_picture(parsed, picture, tmp_path / "staging") == first
