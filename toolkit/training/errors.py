"""The one error family the trainers raise for problems a user can act on (the CLI prints them as one line, exit 2)."""
from __future__ import annotations

from mertk.errors import InputError


class TrainingError(InputError):
    """Unusable input or options: the message names the file, row or option."""
