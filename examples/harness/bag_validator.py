"""Our own check of a zipped BagIt bag: manifests recomputed, payload complete, Payload-Oxum, tag manifest."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from examples.harness.errors import DemoError

__all__ = ["BagReport", "validate_bag"]

_READ_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True)
class BagReport:
    """What :func:`validate_bag` checked.

    Attributes:
        bag_name: the bag's top directory in the zip.
        payload_files: files under ``data/`` (each checked against the manifest).
        payload_octets: their total size.
        documents: distinct document folders under ``data/``.
        bag_info: the ``bag-info.txt`` elements.
    """

    bag_name: str
    payload_files: int
    payload_octets: int
    documents: int
    bag_info: Mapping[str, str] = field(default_factory=dict)


def validate_bag(path: Path) -> BagReport:
    """Check a zipped BagIt bag: every manifest line recomputed, no payload file unlisted, Payload-Oxum, tag manifest.

    Raises:
        DemoError: the archive is not a zip, not one bag, or a check failed (the message names the file).
    """
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DemoError(f"{path} is not a readable zip archive: {exc}") from exc
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1:
            raise DemoError(f"{path}: expected one bag directory at the top, found {sorted(roots)}")
        root = roots.pop()

        def read(relative: str) -> bytes:
            try:
                return archive.read(f"{root}/{relative}")
            except KeyError as exc:
                raise DemoError(f"{path}: the bag has no {relative}") from exc

        if not read("bagit.txt").startswith(b"BagIt-Version: "):
            raise DemoError(f"{path}: bagit.txt does not declare a BagIt-Version")
        manifest = _parse_manifest(read("manifest-sha256.txt").decode("utf-8"), "manifest-sha256.txt")
        payload = {n[len(root) + 1 :] for n in names if n.startswith(f"{root}/data/")}
        if set(manifest) != payload:
            missing, extra = sorted(set(manifest) - payload), sorted(payload - set(manifest))
            raise DemoError(f"{path}: manifest and payload differ (listed but absent: {missing}; unlisted: {extra})")
        octets = 0
        for relative, expected in manifest.items():
            actual, size = _member_sha256(archive, f"{root}/{relative}")
            if actual != expected:
                raise DemoError(f"{path}: checksum mismatch for {relative}: manifest {expected}, content {actual}")
            octets += size
        info = _parse_bag_info(read("bag-info.txt").decode("utf-8"))
        oxum = f"{octets}.{len(manifest)}"
        if info.get("Payload-Oxum") != oxum:
            raise DemoError(f"{path}: Payload-Oxum is {info.get('Payload-Oxum')!r}, the payload is {oxum}")
        tags = _parse_manifest(read("tagmanifest-sha256.txt").decode("utf-8"), "tagmanifest-sha256.txt")
        for relative, expected in tags.items():
            if _member_sha256(archive, f"{root}/{relative}")[0] != expected:
                raise DemoError(f"{path}: tag file {relative} does not match tagmanifest-sha256.txt")
    documents = {p.split("/")[1] for p in payload if p.count("/") >= 2}
    return BagReport(
        bag_name=root, payload_files=len(manifest), payload_octets=octets, documents=len(documents), bag_info=info
    )


def _parse_manifest(text: str, name: str) -> dict[str, str]:
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        digest, sep, encoded = line.partition(" ")
        relative = encoded.lstrip(" ")
        if not sep or len(digest) != 64 or not relative:
            raise DemoError(f"{name} line {number} is not '<sha256> <path>': {line!r}")
        relative = relative.replace("%0A", "\n").replace("%0D", "\r").replace("%25", "%")
        entries[relative] = digest.lower()
    return entries


def _parse_bag_info(text: str) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        if sep:
            info[label.strip()] = value.strip()
    return info


def _member_sha256(archive: zipfile.ZipFile, name: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with archive.open(name) as member:
        while chunk := member.read(_READ_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
