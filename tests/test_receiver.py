"""dicom-receiver's parts without a network (configuration, instance checks, spool, ledger,
grouping, status) and the quick checks against real peers: C-ECHO, rejected associations,
refused instances."""

from __future__ import annotations

import io
import json
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import dcmread, dcmwrite
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from receiver_support import (
    ECHOSCU,
    SAMPLES,
    Running,
    acknowledged,
    assert_no_traceback,
    need,
    receiver,
    storescu,
    write_config,
)
from series_selection.common.errors import InputError, InstanceRefusedError
from series_selection.receiver.cli import main, status_table
from series_selection.receiver.config import parse_config
from series_selection.receiver.groups import Groups
from series_selection.receiver.ledger import Ledger
from series_selection.receiver.spool import (
    CANNOT_UNDERSTAND,
    DATA_SET_DOES_NOT_MATCH,
    OUT_OF_RESOURCES,
    Instance,
    Spool,
    check_instance,
    file_meta,
    file_name,
    read_file_meta,
)

CT = sorted(p for p in (SAMPLES / "ct-abdomen" / "portal-venous-5mm").rglob("*") if p.is_file())
MR = sorted(p for p in (SAMPLES / "mr-brain").rglob("*") if p.is_file())
GIB = 1 << 30

# -- configuration ---------------------------------------------------------------------------


def test_example_configuration_at_the_repository_root_loads() -> None:
    root = Path(__file__).resolve().parents[1]
    config = parse_config((root / "receiver.yaml").read_text(), "receiver.yaml", root)
    called = config.called("SERIES-SELECT")
    assert called is not None
    assert (called.grouping, called.timeout, called.max_jobs) == ("study", 5.0, 1)
    assert called.pipeline == root / "pipeline.yaml" and called.rules is None
    assert called.allows_calling("ANY-SCANNER") and called.allows_host("10.1.2.3")
    assert config.port == 11112 and config.engine == "local"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ae_titles: {}", "$.ae_titles: {} should be non-empty"),
        ("ae_titles: {TOO-LONG-AE-TITLE-X: {}}", "$.ae_titles"),
        ("ae_titles: {'A\\\\B': {}}", "$.ae_titles"),
        ("ae_titles: {'   ': {}}", "$.ae_titles"),
        ("ae_titles: {A: {grouping: patient}}", "$.ae_titles.A.grouping"),
        ("ae_titles: {A: {timeout: 0}}", "$.ae_titles.A.timeout"),
        ("ae_titles: {A: {max_jobs: 0}}", "$.ae_titles.A.max_jobs"),
        (
            "ae_titles: {A: {calling_hosts: [10.0.0.0/8, localhost]}}",
            "$.ae_titles.A.calling_hosts[1]: 'localhost' is not an IP address or network",
        ),
        ("ae_titles: {A: {calling_ae_titles: [X\x01]}}", "not valid YAML"),
        ("ae_titles: {A: {colour: red}}", "Additional properties"),
        ("port: 70000\nae_titles: {A: {}}", "$.port"),
        ("ae_titles: {A: {}, ' A ': {}}", "given twice"),
        ("ae_titles: [", "not valid YAML"),
        ("- a list", "$: ['a list'] is not of type 'object'"),
    ],
)
def test_bad_configurations_are_one_line_errors(text: str, expected: str) -> None:
    with pytest.raises(InputError) as error:
        parse_config(text, "r.yaml", Path("/base"))
    assert expected in error.value.message
    assert error.value.message.startswith("r.yaml")
    assert "\n" not in error.value.message


def test_relative_paths_are_taken_from_the_configuration_folder(tmp_path: Path) -> None:
    text = "spool: s\noutput: /abs/out\nae_titles: {A: {pipeline: p.yaml, rules: ../r.yaml}}"
    config = parse_config(text, "r.yaml", tmp_path)
    assert config.spool == tmp_path / "s" and config.output == Path("/abs/out")
    called = config.called(" A ")
    assert called is not None and called.rules == tmp_path / "../r.yaml"


def test_the_command_refuses_a_bad_configuration_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "r.yaml"
    config.write_text("ae_titles: {A: {grouping: patient}}")
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "grouping" in err and len(err.strip().splitlines()) == 1
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert main([]) == 2  # no configuration at all


# -- instances -------------------------------------------------------------------------------


def test_a_whole_instance_gives_its_identifiers() -> None:
    data = CT[0].read_bytes()
    dataset = dcmread(CT[0])
    instance = check_instance(data, GIB, dataset.SOPClassUID, dataset.SOPInstanceUID)
    assert instance.study_instance_uid == dataset.StudyInstanceUID
    assert instance.series_instance_uid == dataset.SeriesInstanceUID


def _encoded(syntax: str) -> bytes:
    dataset = dcmread(CT[0])
    buffer = io.BytesIO()
    dataset.file_meta.TransferSyntaxUID = syntax
    # the structure is what counts here: pixel bytes are not swapped for big endian
    dcmwrite(
        buffer,
        dataset,
        implicit_vr=syntax == ImplicitVRLittleEndian,
        little_endian=syntax != ExplicitVRBigEndian,
        force_encoding=True,
    )
    data = buffer.getvalue()
    assert dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID == syntax
    return data


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_other_encodings_are_walked_too(syntax: str) -> None:
    data = _encoded(syntax)
    check_instance(data, GIB)
    with pytest.raises(InstanceRefusedError) as refused:
        check_instance(data[:-10], GIB)
    assert refused.value.status == CANNOT_UNDERSTAND


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file=st.sampled_from(CT + MR[:5]), cut=st.integers(min_value=1, max_value=4000))
def test_any_data_set_cut_inside_its_pixel_data_is_refused(file: Path, cut: int) -> None:
    data = file.read_bytes()
    if dcmread(file).get("PixelData") is None:
        return
    cut = min(cut, len(data) - 1)
    with pytest.raises(InstanceRefusedError) as refused:
        check_instance(data[:-cut], GIB)
    assert refused.value.status == CANNOT_UNDERSTAND
    assert "cut short" in refused.value.message


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(min_value=0, max_value=len(CT[0].read_bytes()) - 1))
def test_any_cut_is_refused_or_reads_as_the_same_instance(cut: int) -> None:
    """A cut exactly between two elements leaves a shorter, whole data set: it must still be
    the same instance (the same identifiers), never another one."""
    data = CT[0].read_bytes()
    whole = check_instance(data, GIB)
    try:
        assert check_instance(data[:cut], GIB) == whole
    except InstanceRefusedError as refused:
        assert refused.status == CANNOT_UNDERSTAND


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=2000), prefix=st.booleans())
def test_arbitrary_bytes_never_escape_as_another_exception(data: bytes, prefix: bool) -> None:
    if prefix:
        data = b"\0" * 128 + b"DICM" + data
    try:
        check_instance(data, GIB)
    except InstanceRefusedError as refused:
        assert refused.status == CANNOT_UNDERSTAND


def test_limits_and_mismatches_have_their_statuses() -> None:
    data = CT[0].read_bytes()
    start, _ = read_file_meta(data)
    check_instance(data, len(data) - start)  # the limit is the data set's size
    with pytest.raises(InstanceRefusedError) as refused:
        check_instance(data, len(data) - start - 1)
    assert refused.value.status == OUT_OF_RESOURCES
    with pytest.raises(InstanceRefusedError) as refused:
        check_instance(data, GIB, sop_class_uid="1.2.840.10008.5.1.4.1.1.4")
    assert refused.value.status == DATA_SET_DOES_NOT_MATCH
    with pytest.raises(InstanceRefusedError) as refused:
        check_instance(data, GIB, sop_instance_uid="1.2.3")
    assert refused.value.status == DATA_SET_DOES_NOT_MATCH


# -- spool and ledger ------------------------------------------------------------------------


def test_the_spool_keeps_identical_bytes_once_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.open()
    (spool.tmp / "left-by-a-crash.part").write_bytes(b"half")
    spool.open()
    assert list(spool.tmp.iterdir()) == []
    spool.create_group("g1")
    data = CT[0].read_bytes()
    path, existed = spool.store("g1", "1.2.3.dcm", data)
    assert not existed and path.read_bytes() == data and path.name == "1.2.3.dcm"
    assert spool.store("g1", "1.2.3.dcm", data) == (path, True)
    other = data[:-2] + b"\x01\x02"  # other bytes under the same name: kept beside it
    beside, existed = spool.store("g1", "1.2.3.dcm", other)
    assert not existed and beside.name.startswith("1.2.3-") and beside.read_bytes() == other
    assert spool.store("g1", "1.2.3.dcm", other) == (beside, True)
    assert path.read_bytes() == data
    assert spool.files("g1") == sorted([path, beside]) and list(spool.tmp.iterdir()) == []


@settings(max_examples=100, deadline=None)
@given(uid=st.text(max_size=80))
def test_file_names_come_from_well_formed_uids_only(uid: str) -> None:
    instance = Instance("1.2", uid, "1.3", "1.4")
    name = file_name(instance, b"data")
    assert name.endswith(".dcm") and "/" not in name and len(name) <= 68
    assert name[:-4] == uid or (len(name) == 68 and all(c in "0123456789abcdef" for c in name[:-4]))


def test_the_file_meta_depends_only_on_the_instance_and_syntax() -> None:
    dataset = dcmread(CT[0])
    instance = check_instance(CT[0].read_bytes(), GIB)
    meta = file_meta(instance, dataset.file_meta.TransferSyntaxUID)
    start, _ = read_file_meta(CT[0].read_bytes())
    rebuilt = meta + CT[0].read_bytes()[start:]
    again = dcmread(io.BytesIO(rebuilt))
    assert again.file_meta.MediaStorageSOPInstanceUID == dataset.SOPInstanceUID
    assert again.file_meta.TransferSyntaxUID == dataset.file_meta.TransferSyntaxUID
    assert again.PixelData == dataset.PixelData
    assert check_instance(rebuilt, GIB) == instance


def test_the_ledger_records_states_files_and_different_bytes_of_one_instance(
    tmp_path: Path,
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.create_job("j1", "A", "study", "1.2.3", 100.0)
    assert ledger.add_file("j1", "aa.dcm", "1.2.3.4", "1.2", "1.2.3.9", 10, "X", 101.0) == []
    assert ledger.add_file("j1", "aa.dcm", "1.2.3.4", "1.2", "1.2.3.9", 10, "X", 102.0) == []
    assert ledger.add_file("j1", "bb.dcm", "1.2.3.4", "1.2", "1.2.3.9", 12, "X", 103.0) == [
        "aa.dcm"
    ]
    for state in ("queued", "running", "done"):
        ledger.set_state("j1", state, 104.0, "chosen" if state == "done" else None)  # type: ignore[arg-type]
    ledger.close()
    reopened = Ledger(tmp_path / "ledger.sqlite", read_only=True)
    (job,) = reopened.jobs()
    assert (job.state, job.instances, job.bytes, job.runs, job.message) == (
        "done",
        2,
        22,
        1,
        "chosen",
    )
    assert job.last_instance == 103.0
    reopened.close()
    with sqlite3.connect(tmp_path / "ledger.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_status_prints_a_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.create_job("j1", "A", "study", "1.2.3", 100.0)
    ledger.set_state("j1", "failed", 101.0, "line one\nline two\x1b[31m" + "x" * 100)
    ledger.create_job("j2", "B", "series", "1.2.4", 102.0)
    ledger.close()
    assert main(["status", "--output", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["ID", "CALLED_AE", "STATE"]
    assert [line.split()[:3] for line in table[1:]] == [
        ["j1", "A", "failed"],
        ["j2", "B", "receiving"],
    ]
    assert "\x1b" not in "".join(table) and len(table) == 3
    assert main(["status", "--output", str(tmp_path), "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)["jobs"]
    assert [(j["id"], j["state"], j["instances"]) for j in jobs] == [
        ("j1", "failed", 0),
        ("j2", "receiving", 0),
    ]
    assert status_table([]).endswith("(no jobs)\n")
    assert main(["status", "--output", str(tmp_path / "none")]) == 2


# -- grouping --------------------------------------------------------------------------------


def _ids() -> Callable[[], str]:
    counter = iter(range(1_000_000))
    return lambda: f"g{next(counter)}"


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.sampled_from(["A", "B"]),
            st.sampled_from(["s1", "s2"]),
            st.floats(min_value=0, max_value=3),
            st.booleans(),
        ),
        max_size=40,
    ),
    timeout=st.floats(min_value=0.5, max_value=2),
)
def test_groups_close_only_after_their_timeout_and_one_key_has_one_open_group(
    events: list[tuple[str, str, float, bool]], timeout: float
) -> None:
    groups = Groups(_ids())
    now = 0.0
    last: dict[str, float] = {}
    closed: set[str] = set()
    for called, key, pause, stored in events:
        now += pause
        for group in groups.close_due(now):
            assert now - last[group.id] >= timeout
            closed.add(group.id)
        group, opened = groups.begin(called, key, timeout, now)
        assert group.id not in closed
        assert opened == (group.id not in last)
        last.setdefault(group.id, now)
        # while it is written, the group is never due, however late
        assert group.id not in {g.id for g in groups.close_due(now + 100)}
        groups.end(group, now, stored)
        if stored:
            last[group.id] = now
    deadline = groups.next_deadline()
    remaining = groups.close_due(now + timeout + 1)  # past every deadline, also at timeout 2
    assert groups.open_ids() == set()
    assert (deadline is None) == (not remaining)


def test_a_resumed_group_keeps_its_remaining_time() -> None:
    groups = Groups(_ids())
    groups.resume("old", "A", "s1", 5.0, last=10.0)
    assert groups.close_due(14.9) == []
    group, opened = groups.begin("A", "s1", 5.0, 14.9)
    assert (group.id, opened) == ("old", False)
    groups.end(group, 14.9, stored=True)
    assert groups.close_due(19.8) == [] and [g.id for g in groups.close_due(20.0)] == ["old"]


# -- against real peers, quick ---------------------------------------------------------------


def test_echo_is_answered_and_unknown_or_disallowed_peers_are_rejected(tmp_path: Path) -> None:
    """Called AE title, calling AE title and calling host: each refusal has its reason. The
    peer's host is its source address: 127.0.0.2 is allowed, echoscu's 127.0.0.1 is not."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    config = write_config(
        tmp_path,
        {
            "SERIES-SELECT": {"calling_ae_titles": ["GOOD"]},
            "NEAR": {"calling_hosts": ["10.0.0.0/8", "127.0.0.2"]},
        },
    )

    def echo(called: str) -> subprocess.CompletedProcess[str]:
        command = [str(need(ECHOSCU)), "-v", "-aet", "GOOD", "-aec", called]
        return subprocess.run(
            [*command, "127.0.0.1", str(running.port)], capture_output=True, text=True, check=False
        )

    with receiver(config) as running:
        assert echo("SERIES-SELECT").returncode == 0
        refused = echo("NEAR")
        assert refused.returncode != 0
        assert "Association Rejected" in refused.stderr + refused.stdout
        for calling, called, reason, source in [
            ("GOOD", "OTHER", 0x07, None),  # called AE title not recognised
            ("BAD", "SERIES-SELECT", 0x03, None),  # calling AE title not recognised
            ("GOOD", "NEAR", 0x01, None),  # a host not allowed: no reason given
            ("GOOD", "NEAR", None, "127.0.0.2"),  # an allowed host
        ]:
            ae = AE(ae_title=calling)
            ae.add_requested_context(Verification)
            association = ae.associate(
                "127.0.0.1",
                running.port,
                ae_title=called,
                bind_address=(source or "127.0.0.1", 0),
            )
            if reason is None:
                assert association.is_established
                assert association.send_c_echo().Status == 0
                association.release()
                continue
            assert association.is_rejected
            answer = association.acceptor.primitive
            assert (answer.result, answer.result_source, answer.diagnostic) == (0x01, 0x01, reason)
        running.stop()
    text = running.text()
    assert "to 'OTHER' rejected: unknown called AE title 'OTHER'" in text
    assert "calling AE title 'BAD' is not allowed" in text
    assert text.count("from 'GOOD' at 127.0.0.1 to 'NEAR' rejected: host 127.0.0.1 is not") == 2
    assert "association from 'GOOD' at 127.0.0.1 to SERIES-SELECT released" in text
    assert "association from 'GOOD' at 127.0.0.2 to NEAR released" in text
    assert_no_traceback(text)


@pytest.mark.slow
def test_ignored_sop_classes_are_acknowledged_and_never_kept(tmp_path: Path) -> None:
    """The brain study's text report is of an ignored class: storescu is told it is stored
    (sent alone, and with images of its study), but it is neither on disk nor in the ledger,
    and alone it opens no group."""
    report = SAMPLES / "mr-brain" / "report"
    (ignored,) = (str(dcmread(p).SOPClassUID) for p in report.iterdir())
    images = [p for p in MR if p.parent != report][:3]
    config = write_config(tmp_path, {"A": {"timeout": 60, "ignore_sop_classes": [ignored]}})
    with receiver(config) as running:
        alone = storescu(running.port, "A", report)
        assert len(acknowledged(alone.stdout + alone.stderr)) == 1
        assert running.status() == []
        assert list((running.spool / "groups").iterdir()) == []
        study = storescu(running.port, "A", report, *images)
        assert len(acknowledged(study.stdout + study.stderr)) == 1 + len(images)
        (job,) = running.status()
        running.stop()
    kept = sorted(p.name for p in running.input_folder(job["id"]).iterdir())
    assert kept == sorted(f"{dcmread(p).SOPInstanceUID}.dcm" for p in images)
    assert job["instances"] == len(images) and job["state"] == "receiving"
    text = running.text()
    assert "0 instance(s) stored (0 bytes), 0 again, 1 ignored, 0 refused" in text
    assert f"{len(images)} instance(s) stored" in text and "0 again, 1 ignored" in text
    assert_no_traceback(text)


@pytest.mark.slow
def test_associations_beyond_the_maximum_are_rejected_and_the_next_one_is_served(
    tmp_path: Path,
) -> None:
    """Two associations held open fill max_associations: 2; a storescu and an echoscu are then
    rejected (transient, local limit exceeded), and served once one of the two is released."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    config = write_config(tmp_path, {"A": {"timeout": 60}}, max_associations=2)
    with receiver(config) as running:
        holders = []
        deadline = time.monotonic() + 5  # the start's probe connection ends within a second
        while len(holders) < 2:
            ae = AE(ae_title=f"HOLDER{len(holders)}")
            ae.add_requested_context(Verification)
            association = ae.associate("127.0.0.1", running.port, ae_title="A")
            if association.is_established:
                holders.append(association)
            assert time.monotonic() < deadline
        sent = storescu(running.port, "A", CT[0])
        assert sent.returncode != 0 and acknowledged(sent.stdout + sent.stderr) == []
        assert "Association Rejected" in sent.stdout + sent.stderr
        ae = AE(ae_title="THIRD")
        ae.add_requested_context(Verification)
        third = ae.associate("127.0.0.1", running.port, ae_title="A")
        assert third.is_rejected
        answer = third.acceptor.primitive
        assert (answer.result, answer.result_source, answer.diagnostic) == (0x02, 0x03, 0x02)
        holders.pop().release()
        time.sleep(0.5)  # the released association's thread ends
        sent = storescu(running.port, "A", CT[0])
        assert acknowledged(sent.stdout + sent.stderr) == [CT[0]]
        holders.pop().release()
        running.stop()
    text = running.text()
    limit = "rejected: 2 association(s) at once is the limit (max_associations)"
    assert "from 'STORESCU' at 127.0.0.1 to 'A' " + limit in text
    assert "from 'THIRD' at 127.0.0.1 to 'A' " + limit in text
    assert "ended without release" not in text
    assert text.count(" released after ") == 3
    assert_no_traceback(text)


def test_refused_instances_get_failure_statuses_and_are_never_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data set cut short (sent as raw bytes, as a broken sender would), one over the size
    limit, and a good one: only the good one is kept."""
    from pynetdicom import AE, _config
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)  # send bytes as they are
    data = CT[0].read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:-1000])
    big = next(p for p in (SAMPLES / "ct-abdomen" / "portal-venous").rglob("*") if p.is_file())
    start, _ = read_file_meta(data)
    limit = len(data) - start + 100  # CT[0]'s data set fits, the larger slice's does not
    big_size = big.stat().st_size - read_file_meta(big.read_bytes())[0]
    assert big_size > limit
    config = write_config(tmp_path, {"A": {"timeout": 60}}, max_instance_bytes=limit)
    with receiver(config) as running:
        ae = AE(ae_title="SENDER")
        syntax = dcmread(CT[0]).file_meta.TransferSyntaxUID
        ae.add_requested_context(CTImageStorage, [syntax])
        association = ae.associate("127.0.0.1", running.port, ae_title="A")
        assert association.is_established
        statuses = [association.send_c_store(path).Status for path in (cut, big, CT[0])]
        association.release()
        running.stop()
    assert statuses == [CANNOT_UNDERSTAND, OUT_OF_RESOURCES, 0]
    (kept,) = [p for g in (running.spool / "groups").iterdir() for p in g.iterdir()]
    assert kept.name == f"{dcmread(CT[0]).SOPInstanceUID}.dcm"
    assert dcmread(kept).SOPInstanceUID == dcmread(CT[0]).SOPInstanceUID
    assert list((running.spool / "tmp").iterdir()) == []
    text = running.text()
    assert "refused (status 0xC000): data set is cut short" in text
    assert f"refused (status 0xA700): {big_size} bytes is over the limit of {limit} bytes" in text
    assert_no_traceback(text)


def test_storescu_acknowledgements_are_read_from_its_verbose_output() -> None:
    output = "\n".join(
        [
            "I: Sending file: /a/1.dcm",
            "I: Received Store Response (Success)",
            "I: Sending file: /a/2.dcm",
            "E: Store Failed, file: /a/2.dcm",
            "I: Sending file: /a/3.dcm",
            "I: Received Store Response (Success)",
        ]
    )
    assert acknowledged(output) == [Path("/a/1.dcm"), Path("/a/3.dcm")]


# -- hostile peers, byte by byte -------------------------------------------------------------

APPLICATION_CONTEXT = b"1.2.840.10008.3.1.1.1"
CT_STORAGE = b"1.2.840.10008.5.1.4.1.1.2"
EXPLICIT_LITTLE = b"1.2.840.10008.1.2.1"


def _item(kind: int, value: bytes) -> bytes:
    return bytes([kind, 0]) + len(value).to_bytes(2, "big") + value


def associate_request(called: bytes, calling: bytes = b"HOSTILE") -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2) with AE title fields of any bytes."""
    context = bytes([1, 0, 0, 0]) + _item(0x30, CT_STORAGE) + _item(0x40, EXPLICIT_LITTLE)
    items = (
        _item(0x10, APPLICATION_CONTEXT)
        + _item(0x20, context)
        + _item(0x50, _item(0x51, (16384).to_bytes(4, "big")))
    )
    body = (
        (1).to_bytes(2, "big")
        + b"\0\0"
        + called[:16].ljust(16, b" ")
        + calling[:16].ljust(16, b" ")
        + b"\0" * 32
        + items
    )
    return bytes([0x01, 0]) + len(body).to_bytes(4, "big") + body


def exchange(port: int, *messages: bytes) -> bytes:
    """Send ``messages`` on a new connection; the first bytes answered (empty: closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for message in messages:
            connection.sendall(message)
        try:
            return connection.recv(4096)
        except (TimeoutError, ConnectionResetError):
            return b""


@contextmanager
def associated(port: int) -> Iterator[socket.socket]:
    """A raw connection on which the receiver has accepted an association to AE title GOOD."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as peer:
        peer.sendall(associate_request(b"GOOD"))
        assert peer.recv(4096)[:1] == b"\x02"  # accepted
        yield peer


@pytest.fixture(scope="module")
def hostile_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("hostile")
    config = write_config(folder, {"GOOD": {"timeout": 60}}, max_associations=2)
    with receiver(config) as running:
        yield running


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(called=st.binary(min_size=0, max_size=16))
def test_odd_called_ae_titles_are_never_accepted(hostile_target: Running, called: bytes) -> None:
    if called.strip(b" ") == b"GOOD":
        return
    answer = exchange(hostile_target.port, associate_request(called))
    assert answer[:1] in (b"", b"\x03", b"\x07")  # rejected, aborted or closed
    if answer[:1] == b"\x03":  # result, source, diagnostic
        assert answer[7:10] == bytes([1, 1, 7])
    assert hostile_target.process is not None and hostile_target.process.poll() is None


def test_a_peer_leaving_in_the_middle_of_a_data_set_leaves_nothing(
    hostile_target: Running,
) -> None:
    with associated(hostile_target.port) as peer:
        # a P-DATA-TF announcing 100,000 bytes of data set, of which 1,000 come
        pdv = (99_994).to_bytes(4, "big") + bytes([1, 0x00])
        peer.sendall(bytes([0x04, 0]) + (100_000).to_bytes(4, "big") + pdv + b"\0" * 1000)
    time.sleep(1)
    exchange(hostile_target.port, associate_request(b"\x1b[31mRED\\"))
    assert (
        subprocess.run(
            [str(need(ECHOSCU)), "-aec", "GOOD", "127.0.0.1", str(hostile_target.port)],
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )  # still serving
    assert not list((hostile_target.spool / "groups").iterdir())
    text = hostile_target.text()
    assert "0 instance(s) stored" in text
    assert "\x1b" not in text  # control characters from peers are escaped in the log
    assert_no_traceback(text)


def test_a_pdu_longer_than_the_maximum_announced_ends_the_connection_at_its_header(
    hostile_target: Running,
) -> None:
    """pynetdicom would read a PDU of any announced length (up to 4 GiB) into memory."""
    with associated(hostile_target.port) as peer:
        start = time.monotonic()
        peer.sendall(bytes([0x04, 0]) + (0xFFFF_FFF0).to_bytes(4, "big") + b"\0" * 65536)
        try:
            answer = peer.recv(4096)
        except ConnectionResetError:
            answer = b""
        assert answer in (b"", bytes([0x07, 0]) + answer[2:])  # closed, or an abort first
        assert time.monotonic() - start < 5  # not the 60 s network timeout
    text = hostile_target.text()
    assert "a PDU of 4294967280 bytes was announced, more than the 1048576 bytes" in text
    assert_no_traceback(text)
