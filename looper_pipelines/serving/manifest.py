"""The manifest of a compiled-model artifact: schema, checksums, reading and writing.

An artifact is one folder::

    <artifact>/
        manifest.json      this file's content (written last, see ``compile_lightgbm``)
        model.so           the compiled predictor (backend "native"; .dylib/.dll elsewhere)
        model.tl           the Treelite checkpoint of the same model (always present)

The manifest names every other file of the artifact with its SHA-256, so a reader can
verify the bytes before using them, and it carries its own checksum
(``manifest_sha256``: SHA-256 of the canonical JSON of every other key), so an edited
or truncated manifest is refused as well. The checksum detects corruption and careless
edits; it is not a signature: whoever can rewrite the whole folder can rewrite both.
Pin ``manifest_sha256`` from a trusted source (the registry) with
``CompiledModel.load(path, expected_manifest_sha256=...)`` where that matters.

This module is on the request path: standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

MANIFEST_NAME: Final = "manifest.json"
FORMAT: Final = "looper.compiled-model"
FORMAT_VERSION: Final = 1
BACKENDS: Final = ("native", "gtil")
CHECKSUM_KEY: Final = "manifest_sha256"

_REQUIRED: Final[dict[str, type | tuple[type, ...]]] = {
    "format": str,
    "format_version": int,
    "backend": str,
    "feature_names": list,
    "num_feature": int,
    "num_class": int,
    "task": str,
    "objective": str,
    "categorical_features": list,
    "library": (dict, type(None)),
    "treelite_model": dict,
    "versions": dict,
    "build": dict,
    "metadata": dict,
    CHECKSUM_KEY: str,
}


class ArtifactError(RuntimeError):
    """A compiled-model artifact is missing, malformed or fails an integrity check."""


class IntegrityError(ArtifactError):
    """A file's SHA-256 differs from the one recorded (or pinned) for it."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON encoding used for the manifest checksum."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def manifest_checksum(manifest: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of every key but ``manifest_sha256``."""
    return sha256_bytes(canonical_json({k: v for k, v in manifest.items() if k != CHECKSUM_KEY}))


def resolve_artifact(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(artifact folder, manifest path)`` for either the folder or its manifest file."""
    p = Path(path).expanduser()
    if p.is_dir():
        return p, p / MANIFEST_NAME
    return p.parent, p


def _safe_file_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name:
        raise ArtifactError(f"manifest names an unsafe {what} file: {name!r}")
    if "/" in name or "\\" in name or "\x00" in name:
        raise ArtifactError(f"manifest names an unsafe {what} file: {name!r}")
    return name


def validate_manifest(manifest: Any, *, source: str = "manifest") -> dict[str, Any]:
    """Check structure, format version and self-checksum; return the manifest as a dict."""
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{source}: expected a JSON object, got {type(manifest).__name__}")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise ArtifactError(f"{source}: missing keys {missing}")
    for key, typ in _REQUIRED.items():
        value = manifest[key]
        if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
            raise ArtifactError(
                f"{source}: key {key!r} has the wrong type ({type(value).__name__})"
            )
    if manifest["format"] != FORMAT:
        raise ArtifactError(
            f"{source}: not a compiled-model manifest (format={manifest['format']!r})"
        )
    if manifest["format_version"] != FORMAT_VERSION:
        raise ArtifactError(
            f"{source}: unsupported format_version {manifest['format_version']} "
            f"(this reader understands {FORMAT_VERSION})"
        )
    expected = manifest_checksum(manifest)
    if manifest[CHECKSUM_KEY] != expected:
        raise IntegrityError(
            f"{source}: manifest checksum mismatch (recorded {manifest[CHECKSUM_KEY][:16]}…, "
            f"content hashes to {expected[:16]}…); the manifest was altered or corrupted"
        )
    if manifest["backend"] not in BACKENDS:
        raise ArtifactError(f"{source}: unknown backend {manifest['backend']!r}")
    names = manifest["feature_names"]
    if not all(isinstance(n, str) for n in names) or len(names) != manifest["num_feature"]:
        raise ArtifactError(f"{source}: feature_names do not match num_feature")
    if manifest["num_feature"] < 1 or manifest["num_class"] < 1:
        raise ArtifactError(f"{source}: num_feature and num_class must be positive")
    for key in ("library", "treelite_model"):
        entry = manifest[key]
        if entry is None:
            continue
        _safe_file_name(entry.get("file"), key)
        digest = entry.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            raise ArtifactError(f"{source}: {key} has no valid sha256")
    if manifest["backend"] == "native" and manifest["library"] is None:
        raise ArtifactError(f"{source}: backend 'native' but no library recorded")
    return manifest


def read_manifest(
    path: str | os.PathLike[str], *, expected_sha256: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Read and validate the manifest of the artifact at ``path`` (folder or manifest file).

    Returns ``(artifact folder, manifest)``. With ``expected_sha256``, the manifest's own
    checksum must also equal that value.
    """
    folder, mpath = resolve_artifact(path)
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"no manifest at {mpath}: not a compiled-model artifact") from None
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{mpath}: manifest is not valid JSON ({e})") from None
    manifest = validate_manifest(data, source=str(mpath))
    if expected_sha256 is not None and manifest[CHECKSUM_KEY] != expected_sha256:
        raise IntegrityError(
            f"{mpath}: manifest checksum {manifest[CHECKSUM_KEY]} differs from the pinned "
            f"{expected_sha256}"
        )
    return folder, manifest


def verify_artifact(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """Read and validate the manifest at ``path`` and check the SHA-256 of every file it
    names (without loading anything); raises :class:`ArtifactError` for a missing file and
    :class:`IntegrityError` for a file whose bytes differ from the recorded digest."""
    folder, manifest = read_manifest(path)
    for key in ("library", "treelite_model"):
        entry = manifest[key]
        if entry is None:
            continue
        file = folder / entry["file"]
        try:
            digest = sha256_file(file)
        except FileNotFoundError:
            raise ArtifactError(f"{key} {file} named by the manifest is missing") from None
        if digest != entry["sha256"]:
            raise IntegrityError(f"{file}: SHA-256 {digest[:16]}… differs from the recorded {entry['sha256'][:16]}…")
    return folder, manifest


def finalize_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy with ``manifest_sha256`` set (and the JSON-serialisability checked)."""
    out = {k: v for k, v in manifest.items() if k != CHECKSUM_KEY}
    out[CHECKSUM_KEY] = manifest_checksum(out)
    return out


def write_manifest(folder: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path:
    """Write ``manifest.json`` (with its checksum) into ``folder``, fsynced."""
    final = finalize_manifest(manifest)
    path = Path(folder) / MANIFEST_NAME
    data = json.dumps(final, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    with open(path, "w", encoding="utf-8") as f:
        f.write(data + "\n")
        f.flush()
        os.fsync(f.fileno())
    return path
