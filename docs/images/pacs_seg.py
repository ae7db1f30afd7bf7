"""Redraw docs/images/pacs_seg_viewer.png and pacs_orthanc_study.png: a round trip through a real Orthanc.

    PYTHONPATH=src python docs/images/pacs_seg.py

Starts Debian's Orthanc (with its DICOMweb plugin) on a free localhost port with a temporary storage
folder, uploads pydicom's real ultrasound cine (examples_ybr_color.dcm), runs ``flanet predict --pacs
... --dicom-out seg sr --store --dicom-identity source`` with a random-weights FLA-Net (ResNet-18, 64 px,
seed 0: the masks show where the SEG lands on the cine, not segmentation quality), then retrieves the
cine and the stored SEG back from Orthanc (WADO-RS), decodes the SEG with highdicom and shows its masks
over the cine's frames in the project's viewer (viewer.html) in headless Chromium; and screenshots
Orthanc's own explorer page of the study with its three series (US, SEG, SR). Needs orthanc,
orthanc-dicomweb, chromium and chromium-driver (Debian) and selenium.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
import requests
import torch
from pydicom.data import get_testdata_file

from flanet.data.dicom import iter_dicom_frames
from flanet.evaluation.viewer import ViewerCollector
from flanet.inference.runs.dicom_seg import segmentation_masks
from flanet.inference.runs.pacs import PacsSettings
from flanet.models import create_model, save_checkpoint

HERE = Path(__file__).resolve().parent
PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def _browser():  # noqa: ANN202 - selenium's driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="flanet-pacs-figure-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = {"Name": "flanet-docs", "StorageDirectory": str(work / "db"), "IndexDirectory": str(work / "db"),
              "HttpPort": port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
              "AuthenticationEnabled": False, "Plugins": [PLUGIN], "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (work / "orthanc.json").write_text(json.dumps(config))
    server = subprocess.Popen(["Orthanc", str(work / "orthanc.json")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{root}/system", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        client = PacsSettings(f"{root}/dicom-web").client()
        cine = pydicom.dcmread(get_testdata_file("examples_ybr_color.dcm"))
        client.store_instances([cine])
        study = str(cine.StudyInstanceUID)
        torch.manual_seed(0)
        checkpoint = save_checkpoint(work / "model.pt", create_model("flanet", encoder="resnet18"), {"image_size": 64})
        subprocess.run([sys.executable, "-m", "flanet", "predict", "--checkpoint", str(checkpoint), "--pacs",
                        f"{root}/dicom-web", "--study", study, "--out", str(work / "out"), "--device", "cpu",
                        "--threshold", "0.6", "--no-progress", "--dicom-out", "seg", "sr", "--store",
                        "--dicom-identity", "source"], check=True, env={**os.environ, "PYTHONPATH": "src"})
        series = {item["00080060"]["Value"][0]: item["0020000E"]["Value"][0]
                  for item in client.search_for_series(study_instance_uid=study)}
        instance = client.search_for_instances(study_instance_uid=study, series_instance_uid=series["SEG"])[0]
        seg = client.retrieve_instance(study, series["SEG"], instance["00080018"]["Value"][0])
        stored_cine = client.retrieve_instance(study, str(cine.SeriesInstanceUID), str(cine.SOPInstanceUID),
                                               media_types=(("application/dicom", "*"),))
        stored_cine.save_as(work / "cine.dcm", enforce_file_format=True)
        masks = segmentation_masks(seg)  # the SEG as Orthanc holds it
        viewer = ViewerCollector(None)
        for index, rgb in enumerate(iter_dicom_frames(work / "cine.dcm")):
            mask = masks.get(index + 1, np.zeros(rgb.shape[:2], bool))
            viewer.kept(1)
            viewer.add_frame("examples_ybr_color (SEG from Orthanc)", f"{index + 1:06d}", index, float(mask.sum()),
                             mask, rgb=rgb)
        page = viewer.write(work / "viewer.html", None, "DICOM SEG retrieved from Orthanc over the cine",
                            "lesion area in the SEG (px)", note="Prediction: the SEG's segment, decoded by highdicom.")
        browser = _browser()
        try:
            browser.get(page.as_uri())
            time.sleep(1.0)
            browser.save_screenshot(str(HERE / "pacs_seg_viewer.png"))
            orthanc_study = requests.post(f"{root}/tools/lookup", data=study, timeout=5).json()[0]["ID"]
            browser.get(f"{root}/app/explorer.html#study?uuid={orthanc_study}")
            time.sleep(2.0)
            browser.save_screenshot(str(HERE / "pacs_orthanc_study.png"))
        finally:
            browser.quit()
    finally:
        server.terminate()
        server.wait(timeout=20)
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {HERE / 'pacs_seg_viewer.png'} and {HERE / 'pacs_orthanc_study.png'}")


if __name__ == "__main__":
    main()
