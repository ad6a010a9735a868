"""Progress bars for long stages (stderr, disabled when not a terminal unless forced)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def progress_bar(total: int, desc: str, unit: str = "it") -> Iterator[tqdm]:
    disable = not (sys.stderr.isatty() or os.environ.get("MEDCONCEPTS_PROGRESS") == "1")
    with tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True) as bar:
        yield bar
