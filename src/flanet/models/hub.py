"""Checkpoints named by a location: ``hf://<owner>/<repo>[@<revision>]/<file>`` or ``https://...``.

``predict``, ``evaluate``, ``export`` and training's ``model.init_from`` take a checkpoint as a
local path or as one of these references (docs/model.md, "Checkpoints from the Hub"):

* ``hf://owner/repo/path/in/repo.pt`` (``@revision`` after the repo name pins a branch, tag or
  commit): fetched by ``huggingface_hub.hf_hub_download`` into the Hugging Face Hub cache
  (``HF_HOME`` / ``HF_HUB_CACHE``), downloaded once, read from the cache afterwards and never
  fetched with ``HF_HUB_OFFLINE=1``. The file's SHA-256 is checked against ``--sha256`` when
  given, else against the hub's own LFS hash (the cached blob's name).
* ``https://...``: needs ``--sha256``; downloaded once into ``<HF_HOME>/flanet/downloads/<sha256>/``
  (not with ``HF_HUB_OFFLINE=1``), the hash checked before the file is used.

The file is then read like any checkpoint (``weights_only=True``, :mod:`flanet.models.checkpoint`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

HF_SCHEME = "hf://"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REPO_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


#: ``--help`` texts of the commands that take a checkpoint.
CHECKPOINT_HELP = ("a local path, hf://<owner>/<repo>[@<revision>]/<file> (downloaded once into the Hugging Face "
                   "cache; HF_HUB_OFFLINE honoured) or an https:// URL (needs --sha256)")
SHA256_HELP = "expected SHA-256 of the checkpoint file: required with an https:// URL, checked when given otherwise"


class HubError(ValueError):
    """A checkpoint reference that cannot be resolved (bad form, not cached offline, wrong hash)."""


@dataclass(frozen=True)
class HubReference:
    """``hf://owner/repo[@revision]/file`` taken apart."""

    repo_id: str
    filename: str
    revision: str | None = None


def is_remote(reference: str | os.PathLike) -> bool:
    """Whether ``reference`` names a checkpoint on the Hub or at a URL (not a local path)."""
    text = str(reference)
    return text.startswith(HF_SCHEME) or text.startswith(("https://", "http://"))


def parse_hf_reference(reference: str) -> HubReference:
    """``hf://owner/repo[@revision]/path/to/file`` -> :class:`HubReference`.

    Raises:
        HubError: not of that form.
    """
    parts = reference[len(HF_SCHEME):].split("/")
    if not reference.startswith(HF_SCHEME) or len(parts) < 3 or not all(parts):
        raise HubError(f"{reference}: a Hub checkpoint is hf://<owner>/<repo>[@<revision>]/<file>")
    name, _, revision = parts[1].partition("@")
    if not (_REPO_PART.match(parts[0]) and _REPO_PART.match(name)) or (_ and not revision):
        raise HubError(f"{reference}: bad repository {parts[0]}/{parts[1]} (hf://<owner>/<repo>[@<revision>]/<file>)")
    return HubReference(f"{parts[0]}/{name}", "/".join(parts[2:]), revision or None)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not _SHA256.match(value):
        raise HubError(f"--sha256 must be 64 hexadecimal digits, got {value!r}")
    return value


def _verify(path: Path, expected: str, reference: str) -> Path:
    actual = file_sha256(path)
    if actual != expected:
        raise HubError(f"{reference}: SHA-256 of the downloaded file is {actual}, expected {expected} "
                       f"(cached copy: {path}; delete it to download again)")
    return path


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _from_hub(reference: str, sha256: str | None) -> Path:
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    ref = parse_hf_reference(reference)
    try:
        path = Path(hf_hub_download(ref.repo_id, ref.filename, revision=ref.revision))
    except (LocalEntryNotFoundError, EntryNotFoundError, RepositoryNotFoundError) as err:
        why = ("it is not in the Hugging Face Hub cache and HF_HUB_OFFLINE is set" if _offline()
               else f"it could not be downloaded ({type(err).__name__})")
        raise HubError(f"{reference}: {why} (cache: {constants.HF_HUB_CACHE})") from err
    blob = path.resolve().name
    expected = sha256 or (blob if _SHA256.match(blob) else None)
    return _verify(path, expected, reference) if expected else path


def url_cache_dir() -> Path:
    """Where ``https://`` checkpoints are kept: ``<HF_HOME>/flanet/downloads``."""
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "flanet" / "downloads"


def _from_url(reference: str, sha256: str | None) -> Path:
    if sha256 is None:
        raise HubError(f"{reference}: an https:// checkpoint needs --sha256 (its expected SHA-256)")
    name = Path(unquote(urlparse(reference).path)).name or "checkpoint.pt"
    target = url_cache_dir() / sha256 / name
    if target.is_file():
        return _verify(target, sha256, reference)
    if _offline():
        raise HubError(f"{reference}: not downloaded yet ({target}) and HF_HUB_OFFLINE is set")
    from huggingface_hub.file_download import http_get

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{name}.{os.getpid()}.part")
    try:
        with open(partial, "wb") as handle:
            http_get(reference, handle)
        _verify(partial, sha256, reference)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def resolve_checkpoint(reference: str | os.PathLike, sha256: str | None = None) -> Path:
    """The local file of a checkpoint given as a path, ``hf://`` reference or ``https://`` URL.

    Args:
        reference: local path, ``hf://owner/repo[@revision]/file`` or ``https://...``.
        sha256: expected SHA-256 (hex) of the file: required for URLs, optional for the Hub,
            checked for a local path too when given.

    Raises:
        HubError: unresolvable reference, not cached while offline, a hash that differs, a URL
            without ``sha256`` or a malformed ``sha256``.
    """
    sha256 = _check_sha256(sha256)
    text = str(reference)
    if text.startswith(HF_SCHEME):
        return _from_hub(text, sha256)
    if text.startswith("http://"):
        raise HubError(f"{text}: only https:// URLs are fetched")
    if text.startswith("https://"):
        return _from_url(text, sha256)
    path = Path(text)
    return _verify(path, sha256, text) if sha256 and path.is_file() else path


@dataclass(frozen=True)
class CachedCheckpoint:
    """A checkpoint-like file in the caches (``flanet weights``)."""

    reference: str
    path: Path
    size: int


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


def cached_checkpoints() -> list[CachedCheckpoint]:
    """Checkpoint files in the Hugging Face Hub cache (every model repo, every cached revision) and
    the ``https://`` downloads, as references ``predict --checkpoint`` takes."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    found: list[CachedCheckpoint] = []
    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except CacheNotFound:
        info = None
    for repo in sorted(info.repos if info else (), key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for revision in sorted(repo.revisions, key=lambda r: r.commit_hash):
            refs = sorted(revision.refs)
            pin = "" if "main" in refs else f"@{refs[0] if refs else revision.commit_hash}"
            for file in sorted(revision.files, key=lambda f: f.file_name):
                rel = file.file_path.relative_to(revision.snapshot_path).as_posix()
                if rel.endswith(CHECKPOINT_SUFFIXES):
                    found.append(CachedCheckpoint(f"hf://{repo.repo_id}{pin}/{rel}", file.file_path, file.size_on_disk))
    downloads = url_cache_dir()
    for path in sorted(downloads.glob("*/*")) if downloads.is_dir() else ():
        if path.is_file() and _SHA256.match(path.parent.name):
            found.append(CachedCheckpoint(f"{path.name} (--sha256 {path.parent.name})", path, path.stat().st_size))
    return found
