"""An independent judge of the bags we write: the Library of Congress ``bagit`` package, on the extracted zip."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import bagit

__all__ = ["bagit_validate"]


def bagit_validate(archive: Path | str) -> int:
    """Extract the zipped bag ``archive`` and have ``bagit`` validate it in full (checksums included).

    Our bags are zips with one top folder (``docset-5/bagit.txt``, ``docset-5/data/...``), while
    ``bagit`` reads a bag directory: so the zip is extracted first and that one folder is judged.

    Args:
        archive: the zip file.

    Returns:
        The number of payload files ``bagit`` found.

    Raises:
        bagit.BagError: not a bag, or (as :class:`bagit.BagValidationError`) a check failed.
        AssertionError: the zip does not hold exactly one top folder.
    """
    with tempfile.TemporaryDirectory(prefix="bagit-check-") as scratch:
        with zipfile.ZipFile(archive) as source:
            source.extractall(scratch)  # extractall drops absolute and ".." parts of member names
        tops = list(Path(scratch).iterdir())
        assert len(tops) == 1 and tops[0].is_dir(), f"{archive}: expected one bag folder at the top, got {tops}"
        bag = bagit.Bag(str(tops[0]))
        bag.validate(completeness_only=False)
        return sum(1 for _ in bag.payload_files())
