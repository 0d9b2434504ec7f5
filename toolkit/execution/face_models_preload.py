"""Imported by the fork server of the measuring pool, never by the method: importing it loads
dlib's default face models into that server, so that the workers it forks share one copy
instead of each loading its own. Loading starts no threads. Where the models cannot be loaded
here (another --predictor, none installed), each worker loads them itself, and the build reports
a missing model before any pool starts."""
from __future__ import annotations

from mertk.face import load_models

try:
    load_models(None)
except Exception:  # noqa: BLE001 - an exception here would stop the fork server; the workers report it
    pass
