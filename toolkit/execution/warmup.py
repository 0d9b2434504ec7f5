"""Import later stages' heavy modules in a background thread while an early stage waits on files."""
from __future__ import annotations

import importlib
import threading
from typing import Callable, Sequence


def warm_imports(names: Sequence[str], then: Callable[[], object] | None = None) -> threading.Thread:
    """Import `names` (and call `then`, e.g. a first use that loads kernels) in a daemon thread.

    An import that fails is skipped: the stage that needs the module reports the problem.
    """

    def load() -> None:
        for name in names:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        if then is not None:
            then()

    thread = threading.Thread(target=load, name="warm-imports", daemon=True)
    thread.start()
    return thread
