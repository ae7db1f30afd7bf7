"""``flanet predict --pacs URL --study UID``: segment a study's cines from a PACS and store the results back.

DICOMweb (PS3.18) through dicomweb-client: QIDO-RS lists the study's instances, WADO-RS retrieves each
cine (a multi-frame ultrasound, secondary-capture, XA or XRF image) in its stored transfer syntax into a
private temporary folder (deleted afterwards: it holds the patient's images), each is segmented as a
DICOM cine input is (``<out>/cine-001/``, ... in the study's order; no identifier in a name), and with
``store`` the SEG and SR of every cine (:mod:`flanet.inference.runs.dicom_outputs`, identity ``source``)
go back into the same study in one STOW-RS request. ``<out>/pacs.json`` records what was retrieved
(the study's, series' and instances' UIDs; their replacements in ``deidentify`` mode, so that no
identifier reaches the outputs) and what the study holds afterwards.

Credentials never come from the command line: ``$FLANET_PACS_USERNAME`` / ``$FLANET_PACS_PASSWORD``
(HTTP basic) or ``$FLANET_PACS_TOKEN`` (bearer), or a JSON file (``--pacs-credentials``:
``{"username": ..., "password": ...}`` or ``{"token": ...}``), which wins over the environment; a URL
holding a user or password is refused. TLS certificates are always verified (``--pacs-ca-bundle`` adds
a private CA). Failures keep the error contract: a PACS that cannot be reached, answers with a
server error or does not confirm every stored object is a failed run (:class:`PacsError`, exit 1);
refused credentials, an unknown study or a study without cines is bad input (:class:`PacsRefused`,
exit 2). When storing fails, the study is asked (QIDO-RS) which of the objects it holds, and the error
and ``pacs.json`` name the stored and the missing ones: nothing is half-stored unreported.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pydicom

from flanet.fileio import atomic_write_text, mark_complete, mark_incomplete, prepare_output_folder
from flanet.inference.core.settings import SegmenterSettings
from flanet.inference.runs.burned_in import DEFAULT_POLICY, BurnedInPolicy
from flanet.inference.runs.dicom_outputs import DicomOutputs
from flanet.inference.runs.predict import predict_to_folder

__all__ = ["CINE_SOP_CLASSES", "PacsError", "PacsRefused", "PacsSettings", "predict_pacs_study"]

log = logging.getLogger(__name__)

#: Multi-frame image storage classes flanet segments as cines: ultrasound, secondary capture (byte, word,
#: true colour), X-ray angiography and radio-fluoroscopy.
CINE_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.7.2", "1.2.840.10008.5.1.4.1.1.7.3",
                              "1.2.840.10008.5.1.4.1.1.7.4", "1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.5.1.4.1.1.12.2"})
_STUDY, _SERIES, _INSTANCE, _CLASS, _FRAMES = "0020000D", "0020000E", "00080018", "00080016", "00280008"


class PacsError(RuntimeError):
    """The PACS could not be reached, failed, or did not store every object (a failed run, exit 1)."""


class PacsRefused(ValueError):
    """The PACS refused the credentials, or the study is unknown or holds no cine (bad input, exit 2)."""


@dataclass(frozen=True)
class PacsSettings:
    """Where the PACS's DICOMweb service is and how to log in (secrets are never shown)."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    timeout: float = 120.0

    @classmethod
    def from_environment(cls, url: str, credentials_file: str | Path | None = None, ca_bundle: str | Path | None = None,
                         environ: Mapping[str, str] = os.environ) -> PacsSettings:
        """Settings for ``url`` with credentials from ``credentials_file`` or else the environment.

        Raises:
            ValueError: a URL that is not http(s) or holds credentials, or an unreadable credentials file.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url}: --pacs needs the http(s) URL of a DICOMweb service")
        if parts.username or parts.password:
            raise ValueError("--pacs: the URL holds a user or password; give credentials in $FLANET_PACS_USERNAME / "
                             "$FLANET_PACS_PASSWORD, $FLANET_PACS_TOKEN or --pacs-credentials FILE, never on the command line")
        found: dict[str, Any] = {"username": environ.get("FLANET_PACS_USERNAME"),
                                 "password": environ.get("FLANET_PACS_PASSWORD"), "token": environ.get("FLANET_PACS_TOKEN")}
        if credentials_file is not None:
            found = _read_credentials(Path(credentials_file))
        if bool(found.get("username")) != bool(found.get("password")):
            raise ValueError("--pacs: a username needs a password and a password a username (FLANET_PACS_USERNAME / "
                             "FLANET_PACS_PASSWORD or the credentials file)")
        if found.get("password") and parts.scheme == "http" and parts.hostname not in ("localhost", "127.0.0.1", "::1"):
            log.warning("%s: credentials over plain http are readable on the network; use https", url)
        return cls(url.rstrip("/"), found.get("username") or None, found.get("password") or None,
                   found.get("token") or None, None if ca_bundle is None else str(ca_bundle))

    def client(self) -> Any:
        """A dicomweb-client client for the service, TLS verified (against ``ca_bundle`` when given)."""
        import requests
        from dicomweb_client.api import DICOMwebClient

        session = requests.Session()
        session.verify = self.ca_bundle or True
        headers = {}
        if self.username is not None and self.password is not None:
            session.auth = (self.username, self.password)
        elif self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
        return DICOMwebClient(self.url, session=session, headers=headers or None, timeout=self.timeout)


def _read_credentials(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as error:
        raise ValueError(f"{path}: cannot read the PACS credentials file ({error.strerror})") from error
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("%s: the credentials file is readable by other users; chmod 600 it", path)
    try:
        found = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: the PACS credentials file is not JSON ({error.msg})") from error
    if not isinstance(found, dict) or not ({"username", "password"} <= set(found) or "token" in found):
        raise ValueError(f"{path}: the PACS credentials file needs username and password, or token")
    return {key: str(found[key]) for key in ("username", "password", "token") if found.get(key)}


def _request(what: str, url: str, call: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one DICOMweb call; connection problems and HTTP errors become :class:`PacsError` / :class:`PacsRefused`."""
    import requests

    try:
        return call(*args, **kwargs)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            raise PacsRefused(f"{url}: the PACS refused {what} (HTTP {status}): check the credentials "
                              "($FLANET_PACS_USERNAME/PASSWORD, $FLANET_PACS_TOKEN or --pacs-credentials)") from error
        if status == 404:
            raise PacsRefused(f"{url}: the PACS does not know {what} (HTTP 404)") from error
        raise PacsError(f"{url}: the PACS failed {what} (HTTP {status})") from error
    except (requests.ConnectionError, requests.Timeout) as error:
        raise PacsError(f"{url}: cannot reach the PACS for {what} ({type(error).__name__})") from error
    except requests.RequestException as error:
        raise PacsError(f"{url}: {what} failed ({type(error).__name__}: {error})") from error


def _value(item: Mapping[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value") or [None]
    return values[0]


def study_cines(client: Any, url: str, study: str) -> list[tuple[str, str]]:
    """``(series UID, instance UID)`` of the study's cines (multi-frame images of :data:`CINE_SOP_CLASSES`)."""
    found = _request(f"the instances of study {study}", url, client.search_for_instances, study_instance_uid=study,
                     fields=["NumberOfFrames"], get_remaining=True)  # every page of a large study
    if not found:
        raise PacsRefused(f"{url}: the PACS holds no study {study} (or no instance in it)")
    cines = [(str(_value(item, _SERIES)), str(_value(item, _INSTANCE))) for item in found
             if _value(item, _CLASS) in CINE_SOP_CLASSES and int(_value(item, _FRAMES) or 1) > 1]
    if not cines:
        raise PacsRefused(f"{url}: study {study} holds no multi-frame cine ({len(found)} other instance(s))")
    return cines


def _store(client: Any, url: str, study: str, objects: list[dict[str, Any]]) -> tuple[list[dict], list[dict], str | None]:
    """STOW-RS ``objects`` into ``study``: ``(stored, not stored, why)``.

    An object counts as stored only when the study holds it afterwards (QIDO-RS): a STOW-RS answer is not
    enough (Orthanc's DICOMweb plugin lists an instance its own filter dropped as stored, tested).
    """
    datasets = [pydicom.dcmread(o["path"]) for o in objects]
    problem = None
    try:
        response = _request(f"storing {len(datasets)} object(s) into study {study}", url, client.store_instances,
                            datasets, study_instance_uid=study)
        failed = [str(i.get("FailureReason", "?")) for i in response.get("FailedSOPSequence", [])]
        if failed:
            problem = f"the PACS refused {len(failed)} object(s) (failure reasons {', '.join(sorted(set(failed)))})"
    except (PacsError, PacsRefused) as error:
        problem = str(error)
    present: set[str] = set()
    try:  # what does the study hold now, in the new series?
        for series in sorted({o["series_instance_uid"] for o in objects}):
            held = _request(f"the instances of series {series}", url, client.search_for_instances,
                            study_instance_uid=study, series_instance_uid=series, get_remaining=True)
            present |= {str(_value(item, _INSTANCE)) for item in held}
    except (PacsError, PacsRefused) as again:
        return [], objects, f"{problem or 'stored'}; asking the PACS what it holds failed ({again}): check the study by hand"

    stored = [o for o in objects if o["sop_instance_uid"] in present]
    missing = [o for o in objects if o["sop_instance_uid"] not in present]
    if missing and problem is None:
        problem = f"the PACS accepted {len(missing)} object(s) it does not hold afterwards (filtered out or dropped)"
    return stored, missing, problem


def predict_pacs_study(
    checkpoint: str | Path,
    pacs: PacsSettings,
    study: str,
    out_dir: str | Path,
    *,
    dicom_outputs: DicomOutputs,
    store: bool = False,
    force: bool = False,
    fps: float = 25.0,
    progress: bool = True,
    full_frame: bool = False,
    burned_in: BurnedInPolicy = DEFAULT_POLICY,
    settings: SegmenterSettings | None = None,
) -> dict[str, Any]:
    """Retrieve the cines of ``study``, segment each into ``<out>/cine-NNN/`` and, with ``store``, store the
    SEG and SR back into the study. Returns the ``pacs.json`` record.

    Raises:
        PacsRefused: credentials refused, unknown study, no cine in it (nothing is written).
        PacsError: the PACS unreachable or failing; when storing, after ``pacs.json`` names what it holds.
    """
    if store and (not dicom_outputs.wanted or dicom_outputs.identity.mode != "source"):
        raise ValueError("storing into the source study needs --dicom-out seg/sr and --dicom-identity source")
    client = pacs.client()
    cines = study_cines(client, pacs.url, study)  # before anything is written
    out = prepare_output_folder(out_dir, "predict", inputs=[checkpoint], force=force)
    mark_incomplete(out, "flanet predict --pacs")
    identity = dicom_outputs.identity  # de-identified runs record the replacement UIDs, never the study's own
    record: dict[str, Any] = {"pacs": pacs.url, "study_instance_uid": identity.uid(study), "identity": identity.mode,
                              "cines": [], "stored": [], "not_stored": [], "store": "not asked (--store)"}
    objects: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="flanet-pacs-") as folder:  # the patient's images: deleted afterwards
        for number, (series, instance) in enumerate(cines, 1):
            name = f"cine-{number:03d}"
            dataset = _request(f"cine {number} of study {study}", pacs.url, client.retrieve_instance, study, series,
                               instance, media_types=(("application/dicom", "*"),))
            path = Path(folder) / f"{name}.dcm"
            dataset.save_as(path, enforce_file_format=True)
            video_dir = predict_to_folder(checkpoint, path, out / name, fps=fps, progress=progress,
                                          full_frame=full_frame, burned_in=burned_in, settings=settings,
                                          dicom_outputs=dicom_outputs)
            summary = json.loads((video_dir / "summary.json").read_text(encoding="utf-8"))["videos"][0]
            record["cines"].append({"id": name, "output": name, "series_instance_uid": identity.uid(series),
                                    "sop_instance_uid": identity.uid(instance), "frames": summary["frames"],
                                    "frames_with_lesion": summary["frames_with_lesion"]})
            for kind in ("seg", "sr"):
                written = (summary.get("dicom_outputs") or {}).get(kind)
                if written:
                    objects.append({"cine": name, "kind": kind, "file": f"{name}/{written['file']}",
                                    "path": video_dir / written["file"], "sop_instance_uid": written["sop_instance_uid"],
                                    "series_instance_uid": written["series_instance_uid"]})
    problem = None
    if store:
        stored, missing, problem = _store(client, pacs.url, study, objects) if objects else ([], [], None)
        record["stored"] = [{k: v for k, v in o.items() if k != "path"} for o in stored]
        record["not_stored"] = [{k: v for k, v in o.items() if k != "path"} for o in missing]
        record["store"] = "failed: " + problem if problem else "done"
    atomic_write_text(out / "pacs.json", json.dumps(record, indent=2))
    mark_complete(out)  # the local results are complete; pacs.json says what the PACS holds
    if problem:
        names = ", ".join(f"{o['kind'].upper()} of {o['cine']}" for o in record["not_stored"]) or "none"
        raise PacsError(f"{problem}; stored {len(record['stored'])} of {len(objects)} object(s), not stored: {names} "
                        f"(see {out / 'pacs.json'})")
    return record
