"""The one error family the trainers raise for problems a user can act on (the CLI prints them as one line)."""
from __future__ import annotations


class TrainingError(ValueError):
    """Unusable input or options: the message names the file, row or option."""
