"""`flanet predict --pacs URL --study UID --dicom-out seg sr --store`: a round trip with a real PACS.

Debian's Orthanc with its DICOMweb plugin runs on a free localhost port with a temporary storage folder
for this module (skipped only where the Orthanc binary is absent), behind HTTP basic authentication;
its Lua filter refuses the SR of one study, so that a half-done store can be seen being reported.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
import requests
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from dicom_checks import dciodvfy_errors
from dicom_writer import IDENTIFIERS, colour_frames, write_cine
from flanet.cli import main
from flanet.inference.runs.dicom_seg import segmentation_masks
from flanet.inference.runs.dicom_sr import report_measurements
from flanet.inference.runs.pacs import PacsSettings

REAL_CINE = Path(get_testdata_file("examples_ybr_color.dcm"))
PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "flanet-test", "correct horse battery staple"
REFUSED_SR_STUDY = generate_uid()  # Orthanc's Lua filter refuses SR instances of this study


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The DICOMweb root URL of a fresh Orthanc, stopped after the module."""
    binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian packages orthanc and orthanc-dicomweb; .ci/run installs them)")
    assert PLUGIN.is_file(), f"Orthanc's DICOMweb plugin is missing ({PLUGIN}): install Debian's orthanc-dicomweb"
    folder = tmp_path_factory.mktemp("orthanc")
    port = _free_port()
    lua = folder / "filter.lua"
    lua.write_text("function ReceivedInstanceFilter(dicom, origin, info)\n"
                   f"  return not (dicom.Modality == 'SR' and dicom.StudyInstanceUID == '{REFUSED_SR_STUDY}')\nend\n")
    config = {"Name": "flanet-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
              "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}, "LuaScripts": [str(lua)],
              "Plugins": [str(PLUGIN)], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/system", auth=(USER, PASSWORD), timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"{url}/dicom-web"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLANET_PACS_USERNAME", USER)
    monkeypatch.setenv("FLANET_PACS_PASSWORD", PASSWORD)
    monkeypatch.delenv("FLANET_PACS_TOKEN", raising=False)


def _client(url: str):  # noqa: ANN202 - dicomweb-client's client
    return PacsSettings(url, USER, PASSWORD).client()


def _upload(url: str, path: Path) -> pydicom.Dataset:
    dataset = pydicom.dcmread(path)
    _client(url).store_instances([dataset])
    return dataset


def _series(url: str, study: str) -> dict[str, str]:
    """``{modality: series UID}`` of the study as the PACS holds it."""
    found = _client(url).search_for_series(study_instance_uid=study)
    return {item["00080060"]["Value"][0]: item["0020000E"]["Value"][0] for item in found}


def _predict(checkpoint: Path, url: str, study: str, out: Path, *extra: str) -> int:
    return main(["predict", "--checkpoint", str(checkpoint), "--pacs", url, "--study", study, "--out", str(out),
                 "--device", "cpu", "--no-progress", "--threshold", "0.65", *extra])


def test_round_trip_stores_seg_and_sr_into_the_study(orthanc: str, credentials: None, small_checkpoint: Path,
                                                     tmp_path: Path) -> None:
    cine = _upload(orthanc, REAL_CINE)
    study = str(cine.StudyInstanceUID)
    out = tmp_path / "study"
    assert _predict(small_checkpoint, orthanc, study, out, "--dicom-out", "seg", "sr", "--store",
                    "--dicom-identity", "source") == 0
    record = json.loads((out / "pacs.json").read_text())
    assert record["store"] == "done" and [c["id"] for c in record["cines"]] == ["cine-001"]
    assert sorted(o["kind"] for o in record["stored"]) == ["seg", "sr"] and record["not_stored"] == []
    series = _series(orthanc, study)
    assert set(series) == {"US", "SEG", "SR"}  # the results went back into the cine's study
    client = _client(orthanc)
    seg_item = client.search_for_instances(study_instance_uid=study, series_instance_uid=series["SEG"])[0]
    seg = client.retrieve_instance(study, series["SEG"], seg_item["00080018"]["Value"][0])
    masks = segmentation_masks(seg)  # the SEG as the PACS stored it, read back by highdicom
    pngs = {int(p.stem): cv2.imread(str(p), cv2.IMREAD_UNCHANGED) == 255
            for p in (out / "cine-001" / "masks").glob("*.png")}
    assert masks and sorted(masks) == [n for n, m in sorted(pngs.items()) if m.any()]
    assert all(np.array_equal(mask, pngs[number]) for number, mask in masks.items())
    reference = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert reference.ReferencedSOPInstanceUID == cine.SOPInstanceUID
    sr_item = client.search_for_instances(study_instance_uid=study, series_instance_uid=series["SR"])[0]
    sr = client.retrieve_instance(study, series["SR"], sr_item["00080018"]["Value"][0])
    local = report_measurements(pydicom.dcmread(out / "cine-001" / "dicom" / "sr.dcm"))
    assert report_measurements(sr) == local and local["area"][3] == seg.SegmentSequence[0].TrackingUID
    for name, stored in (("seg.dcm", seg), ("sr.dcm", sr)):  # what the PACS holds is still valid DICOM
        stored.save_as(tmp_path / name, enforce_file_format=True)
        assert dciodvfy_errors(tmp_path / name) == []
    assert not list(out.rglob("*.dcm.tmp*")) and not (out / "INCOMPLETE").exists()


def test_half_done_store_is_reported(orthanc: str, credentials: None, small_checkpoint: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = write_cine(tmp_path / "cine.dcm", colour_frames(4), identifiers=True)
    dataset = pydicom.dcmread(path)
    dataset.StudyInstanceUID = REFUSED_SR_STUDY  # Orthanc refuses this study's SR
    dataset.save_as(path, enforce_file_format=True)
    _upload(orthanc, path)
    out = tmp_path / "study"
    code = _predict(small_checkpoint, orthanc, REFUSED_SR_STUDY, out, "--dicom-out", "sr", "--store",
                    "--dicom-identity", "source", "--threshold", "0.5")
    error = capsys.readouterr().err
    assert code == 1 and error.startswith("flanet predict: error: ") and "Traceback" not in error
    assert "stored 1 of 2 object(s), not stored: SR of cine-001" in error
    record = json.loads((out / "pacs.json").read_text())
    assert [o["kind"] for o in record["stored"]] == ["seg"] and [o["kind"] for o in record["not_stored"]] == ["sr"]
    assert set(_series(orthanc, REFUSED_SR_STUDY)) == {"US", "SEG"}  # what the record says is what the PACS holds


def test_deidentified_study_outputs_hold_no_identifier(orthanc: str, credentials: None, small_checkpoint: Path,
                                                      tmp_path: Path) -> None:
    source = _upload(orthanc, write_cine(tmp_path / "cine.dcm", colour_frames(4), identifiers=True))
    out = tmp_path / "study"
    assert _predict(small_checkpoint, orthanc, str(source.StudyInstanceUID), out, "--dicom-out", "seg", "sr",
                    "--threshold", "0.5") == 0  # --dicom-identity deidentify, the default; nothing stored
    secrets = [*IDENTIFIERS.values(), source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID]
    files = [path for path in out.rglob("*") if path.is_file()]
    assert {"pacs.json", "seg.dcm", "sr.dcm"} <= {path.name for path in files}
    for path in files:
        assert not [s for s in secrets if s.encode() in path.read_bytes() or s in str(path)], path
    record = json.loads((out / "pacs.json").read_text())
    seg = pydicom.dcmread(out / "cine-001" / "dicom" / "seg.dcm")
    assert record["study_instance_uid"] == seg.StudyInstanceUID and record["store"] == "not asked (--store)"
    assert set(_series(orthanc, str(source.StudyInstanceUID))) == {"US"}  # nothing went to the PACS


def test_refusals_and_a_pacs_that_is_down(orthanc: str, small_checkpoint: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    study = str(_upload(orthanc, REAL_CINE).StudyInstanceUID)
    monkeypatch.setenv("FLANET_PACS_USERNAME", USER)
    monkeypatch.setenv("FLANET_PACS_PASSWORD", "wrong")
    assert _predict(small_checkpoint, orthanc, study, tmp_path / "a") == 2
    assert "the PACS refused" in capsys.readouterr().err and not (tmp_path / "a").exists()
    secret = tmp_path / "pacs.json"
    secret.write_text(json.dumps({"username": USER, "password": PASSWORD}))
    secret.chmod(0o600)
    assert _predict(small_checkpoint, orthanc, "1.2.3.4.5", tmp_path / "b", "--pacs-credentials", str(secret)) == 2
    assert "holds no study 1.2.3.4.5" in capsys.readouterr().err and not (tmp_path / "b").exists()
    down = f"http://127.0.0.1:{_free_port()}/dicom-web"  # nothing listens there
    assert _predict(small_checkpoint, down, study, tmp_path / "c", "--pacs-credentials", str(secret)) == 1
    assert "cannot reach the PACS" in capsys.readouterr().err and not (tmp_path / "c").exists()
    in_url = orthanc.replace("http://", f"http://{USER}:{PASSWORD}@")
    assert _predict(small_checkpoint, in_url, study, tmp_path / "d") == 2
    assert "never on the command line" in capsys.readouterr().err
    assert _predict(small_checkpoint, orthanc, study, tmp_path / "e", "--dicom-out", "seg", "--store") == 2
    assert "--dicom-identity source" in capsys.readouterr().err


def test_tls_verification_is_on_by_default() -> None:
    assert PacsSettings.from_environment("https://pacs.example/dicom-web", environ={}).client()._session.verify is True
    bundle = PacsSettings.from_environment("https://pacs.example/dicom-web", ca_bundle="/etc/ca.pem", environ={})
    assert bundle.client()._session.verify == "/etc/ca.pem"
    token = PacsSettings.from_environment("https://pacs.example", environ={"FLANET_PACS_TOKEN": "t0k"})
    assert "t0k" not in repr(token) and token.client()._session.headers["Authorization"] == "Bearer t0k"


def test_store_into_a_pacs_that_went_down_names_every_object_as_unknown(tmp_path: Path) -> None:
    from flanet.inference.runs.pacs import _store

    class Gone:  # the PACS stopped answering between retrieval and storing
        def store_instances(self, *args: object, **kwargs: object) -> None:
            raise requests.ConnectionError("connection refused")

        search_for_instances = store_instances

    path = write_cine(tmp_path / "cine.dcm", colour_frames(2))
    objects = [{"cine": "cine-001", "kind": "seg", "path": path, "sop_instance_uid": "1.2.3", "series_instance_uid": "1.2"}]
    stored, missing, problem = _store(Gone(), "http://127.0.0.1:9/dicom-web", "1.2.9", objects)
    assert stored == [] and missing == objects
    assert "cannot reach the PACS" in problem and "check the study by hand" in problem
