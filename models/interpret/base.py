"""The two roles of interpretation, as interfaces: an Explainer proposes names for a unit
from its explaining reports, a Judge says how strongly each of some reports shows a name.
`keywords` (offline) and `llm` (an OpenAI-compatible endpoint) implement both; the driver
(models.interpret.driver) splits reports, picks the best of k candidates and scores it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Candidate:
    """One proposed name. An empty `label` is a failed proposal; `flag` says why."""

    label: str
    terms: tuple[str, ...] = ()
    term_scores: tuple[float, ...] = ()
    explanation: str | None = None
    flag: str | None = None


@dataclass(frozen=True)
class Scores:
    """A judge's verdicts on some reports: a score in [0, 1] each (NaN: the judge failed on
    that report, with the reasons counted in `failures`); a report shows the name when its
    score is >= `threshold`; `graded` when scores carry more than yes/no."""

    values: np.ndarray
    threshold: float
    graded: bool
    failures: dict[str, int] = field(default_factory=dict)


class Explainer(Protocol):
    @property
    def name(self) -> str: ...

    def explain(self, unit_id: int, top: np.ndarray, control: np.ndarray, k: int) -> list[Candidate]:
        """Up to k candidates from document rows `top` (strongest first) and `control`."""
        ...


class Judge(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, candidate: Candidate, rows: np.ndarray) -> Scores:
        """How strongly each document row shows the candidate's name."""
        ...
