"""What every sample-corpus generator shares: its error class and the file that marks its output."""
from __future__ import annotations

from mertk.errors import InputError

# Written into every generated corpus: a generator overwrites only a folder that holds this file
# (or nothing), never content it did not write.
SAMPLE_INFO_NAME = "mertk_sample.json"


class SampleDataError(InputError):
    """A sample corpus cannot be generated with these parameters or into this folder."""
