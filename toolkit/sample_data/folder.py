"""The folder a sample corpus is written into: every generator goes through `prepare_sample_folder`.

A sample corpus is only ever written into an empty folder, or over a corpus that mertk generated
there before (its info file says so) and that holds nothing else. Any other content -- a user's
real corpus, say -- is refused before a byte is written.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterable

from mertk.errors import InputError

INFO_NAME = "mertk_sample.json"  # written last by every generator: the folder is a generated corpus


class SampleDataError(InputError):
    """A sample corpus cannot be written where, or as, it was asked."""


def prepare_sample_folder(out_dir: Path | str, owned: Iterable[str], corpus: str) -> Path:
    """Create `out_dir`, or clear a previous generated corpus there; refuse any other content.

    `owned` are the top-level names the generator writes (files or folders, besides INFO_NAME).
    """
    out_dir = Path(out_dir)
    owned = {*owned, INFO_NAME}
    if out_dir.exists() and not out_dir.is_dir():
        raise SampleDataError(f"{out_dir}: exists and is not a folder; choose an empty or new folder for the sample {corpus} corpus")
    entries = sorted(out_dir.iterdir()) if out_dir.is_dir() else []
    if entries:
        if not (out_dir / INFO_NAME).is_file():
            raise SampleDataError(
                f"{out_dir}: not empty and not a generated sample corpus (no {INFO_NAME}); "
                f"choose an empty or new folder, mertk never writes over other content"
            )
        foreign = [entry.name for entry in entries if entry.name not in owned]
        if foreign:
            raise SampleDataError(
                f"{out_dir}: holds content the sample {corpus} generator did not write ({', '.join(foreign[:3])}"
                f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder"
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir
