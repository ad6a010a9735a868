"""The LLM interpreter: an explainer that asks a chat model to name what activating reports
share against controls (best-of-k candidates), and a judge that asks, report by report,
whether the named finding is present (Yes/No, graded by the token log-probabilities where
the server returns them).

Prompts are the text files in models/interpret/prompts/ (shipped with the package), filled
with string.Template. Every reply problem becomes a flag: an empty reply, one that is not
the asked-for JSON, a refusal, a label that is too long to be a name.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any

import numpy as np

from data_contracts.config import LLMConfig
from models.interpret.base import Candidate, Scores
from models.interpret.client import ChatClient, Reply
from models.interpret.privacy import prepare_report
from models.interpret.units import spread_pick, unit_rng

MAX_LABEL_WORDS = 12
_REFUSAL = re.compile(
    r"\b(i\s*(?:can(?:no|')t|am unable|'m unable|am not able|won't)|i'm sorry|i am sorry|as an ai|"
    r"cannot (?:assist|help|comply)|not able to (?:assist|help))\b", re.IGNORECASE)
_JSON = re.compile(r"\{.*\}", re.DOTALL)
_ANSWER_TOKENS = {"yes": "yes", "y": "yes", "ye": "yes", "no": "no", "n": "no"}


@cache
def prompt(name: str) -> Template:
    """A prompt template shipped in models/interpret/prompts/<name>.txt."""
    return Template(resources.files("models.interpret").joinpath("prompts", f"{name}.txt").read_text())


def prompt_digest() -> str:
    """Identity of the prompt files, for artifact versions: a changed prompt is new work."""
    import hashlib

    h = hashlib.sha256()
    for name in ("explain_system", "explain_user", "judge_system", "judge_user"):
        h.update(prompt(name).template.encode())
    return h.hexdigest()[:16]


def parse_label(reply: Reply) -> Candidate:
    """Candidate from an explainer reply; failures are flagged (empty, refusal, malformed...)."""
    if reply.error:
        return Candidate("", flag=f"{reply.error}: the call failed")
    text = reply.text.strip()
    if not text:
        return Candidate("", flag="empty: the reply was empty")
    m = _JSON.search(text)
    try:
        obj = json.loads(m.group(0)) if m else None
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        kind = "refusal" if _REFUSAL.search(text) else "malformed"
        return Candidate("", flag=f"{kind}: the reply was not the asked-for JSON")
    label = " ".join(str(obj.get("label") or "").split()).strip(" .;:")
    if not label:
        return Candidate("", flag="malformed: the reply had no label")
    if _REFUSAL.search(label) or len(label.split()) > MAX_LABEL_WORDS:
        return Candidate("", flag=f"{'refusal' if _REFUSAL.search(label) else 'malformed'}: not a short name")
    expl = " ".join(str(obj.get("explanation") or "").split()) or None
    return Candidate(label, explanation=expl)


def yes_probability(reply: Reply) -> tuple[float, bool, str | None]:
    """(P(yes), graded, error) from a judge reply: from the first token's log-probabilities
    where given (yes mass / (yes + no mass)), else from the text's first word."""
    if reply.error:
        return math.nan, False, reply.error
    if reply.top_logprobs:
        mass = {"yes": 0.0, "no": 0.0}
        for tok, lp in reply.top_logprobs:
            side = _ANSWER_TOKENS.get(tok.strip().lower())
            if side:
                mass[side] += math.exp(lp)
        if mass["yes"] + mass["no"] > 0:
            return mass["yes"] / (mass["yes"] + mass["no"]), True, None
    words = re.findall(r"[a-z]+", reply.text.lower())
    if not words:
        return math.nan, False, "empty"
    if words[0] in ("yes", "no"):
        return (1.0 if words[0] == "yes" else 0.0), False, None
    return math.nan, False, "refusal" if _REFUSAL.search(reply.text) else "malformed"


@dataclass
class LLMInterpreter:
    """Explainer and judge over one client and the documents' texts (by document row)."""

    client: ChatClient
    cfg: LLMConfig
    texts: np.ndarray  # object array: document row -> report text
    name: str = "llm"

    def _report(self, row: int) -> str:
        return prepare_report(str(self.texts[row]), self.cfg.max_report_chars, self.cfg.redact)

    def explain_messages(self, unit_id: int, top: np.ndarray, control: np.ndarray) -> list[dict[str, str]]:
        """The explainer sees n_explain_top activating reports (a top_share of them the very
        strongest, the rest spread over activation quantiles) and a random n_explain_control."""
        rng = unit_rng(self.cfg.seed, unit_id, salt=2)
        shown_top = spread_pick(top, self.cfg.n_explain_top, self.cfg.top_share, 5, rng)
        shown_ctrl = control if control.size <= self.cfg.n_explain_control else \
            control[rng.permutation(control.size)[: self.cfg.n_explain_control]]
        user = prompt("explain_user").substitute(
            n_top=len(shown_top), n_control=len(shown_ctrl),
            top_reports="\n".join(f"{i + 1}. {self._report(r)}" for i, r in enumerate(shown_top)),
            control_reports="\n".join(f"{i + 1}. {self._report(r)}" for i, r in enumerate(shown_ctrl)),
        )
        return [{"role": "system", "content": prompt("explain_system").template.strip()},
                {"role": "user", "content": user}]

    def explain(self, unit_id: int, top: np.ndarray, control: np.ndarray, k: int) -> list[Candidate]:
        """k calls: the first greedy (temperature 0), the rest at the configured temperature
        with distinct seeds, so candidates differ and each is reproducible (and cached)."""
        msgs = self.explain_messages(unit_id, top, control)
        reqs = [(msgs, self._explain_params(i)) for i in range(k)]
        return [parse_label(r) for r in self.client.complete_many(reqs)]

    def _explain_params(self, i: int) -> Mapping[str, Any]:
        params: dict[str, Any] = {"temperature": 0.0 if i == 0 else self.cfg.temperature,
                                  "max_tokens": self.cfg.max_tokens, "seed": self.cfg.seed + i}
        if self.cfg.json_mode:
            params["response_format"] = {"type": "json_object"}
        return params

    def score(self, candidate: Candidate, rows: np.ndarray) -> Scores:
        system = prompt("judge_system").template.strip()
        params = {"temperature": 0.0, "max_tokens": 1, "logprobs": True, "top_logprobs": 5, "seed": self.cfg.seed}
        reqs = [([{"role": "system", "content": system},
                  {"role": "user", "content": prompt("judge_user").substitute(
                      label=candidate.label, report=self._report(int(r)))}], params) for r in rows]
        values, graded, failures = np.full(len(reqs), math.nan), False, Counter[str]()
        for i, reply in enumerate(self.client.complete_many(reqs)):
            p, g, err = yes_probability(reply)
            values[i], graded = p, graded or g
            if err:
                failures[err] += 1
        return Scores(values, 0.5, graded, dict(failures))
