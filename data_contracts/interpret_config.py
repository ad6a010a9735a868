"""Config of the interpretation stage (`interpretation:` in the run config): which interpreter
names a feature (offline keywords or an LLM on an OpenAI-compatible endpoint), which judge
scores the name, and how explainer and held-out scoring reports are drawn.

Privacy by construction: the LLM method needs an explicit endpoint; an endpoint outside this
machine or a private network needs `allow_remote_host: true` on top; the API key is read from
the environment variable named here, never written in a config or an artifact.
"""

from __future__ import annotations

import ipaddress
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Host names that cannot leave a site: a single label ("vllm", "ollama": a container or
# cluster service), localhost, and the private-use suffixes of RFC 6762 / 8375 and clusters.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".lan", ".home.arpa", ".svc", ".cluster.local")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def host_is_local(host: str) -> bool:
    """True for loopback, private, link-local and unique-local addresses and for host names
    that only resolve inside a site (see _LOCAL_SUFFIXES)."""
    h = host.strip("[]").lower()
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return h == "localhost" or "." not in h or h.endswith(_LOCAL_SUFFIXES)
    return ip.is_loopback or ip.is_private or ip.is_link_local


class LLMConfig(_Strict):
    """An OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, ...).

    `base_url` ends before `/chat/completions` (e.g. http://127.0.0.1:8000/v1). Retries
    (timeouts, connection errors, HTTP 429 and 5xx) wait `backoff_s * 2**attempt` seconds,
    or the server's Retry-After when it is shorter than `max_backoff_s`.
    """

    base_url: str
    model: str
    api_key_env: str | None = None  # name of the environment variable holding the key
    allow_remote_host: bool = False  # send report text to a host outside this site
    timeout_s: float = Field(60.0, gt=0)
    concurrency: int = Field(4, ge=1, le=256)
    max_retries: int = Field(3, ge=0, le=20)
    backoff_s: float = Field(1.0, ge=0)
    max_backoff_s: float = Field(30.0, ge=0)
    n_candidates: int = Field(3, ge=1, le=20)  # best-of-k explainer candidates
    temperature: float = Field(0.7, ge=0, le=2)  # explainer; the judge always uses 0
    max_tokens: int = Field(200, ge=8)
    n_explain_top: int = Field(20, ge=1)  # activating reports shown to the explainer
    n_explain_control: int = Field(20, ge=1)  # non-activating reports shown to the explainer
    top_share: float = Field(0.5, ge=0, le=1)  # of n_explain_top from the very top; rest across quantiles
    max_report_chars: int = Field(1500, ge=50)  # each report is cut to this many characters
    json_mode: bool = True  # ask for response_format json_object (servers without it: false)
    redact: bool = True  # dates, times, numbers of 4+ digits, e-mails, phones, "Dr. X" removed
    seed: int = 0

    @model_validator(mode="after")
    def _endpoint(self) -> LLMConfig:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"interpretation.llm.base_url {self.base_url!r}: expected http(s)://host[:port]/v1")
        if not (self.allow_remote_host or host_is_local(parts.hostname)):
            raise ValueError(
                f"interpretation.llm.base_url host {parts.hostname!r} is outside this machine and private "
                "networks: report text would leave the site. Use a locally hosted endpoint, or set "
                "interpretation.llm.allow_remote_host: true if that host is approved for report text."
            )
        return self


class InterpretConfig(_Strict):
    """Which interpreter names each feature, and how its name is scored.

    Reports are split by patient: a `heldout_frac` share of a feature's patients is held out
    for scoring (never shown to the explainer). With best-of-k candidates the held-out
    patients are split again, half to choose the candidate and half to score the winner, so
    the reported score is not the maximum of k noisy scores.
    """

    method: Literal["keywords", "llm"] = "keywords"
    judge: Literal["auto", "keywords", "llm"] = "auto"  # auto: the method's own judge
    n_top: int = Field(100, ge=4)  # activating reports the explainer learns from (keywords: counts)
    n_control: int = Field(300, ge=4)  # control reports the explainer learns from
    heldout_frac: float = Field(0.5, gt=0, lt=1)  # share of patients held out for scoring
    n_score_top: int = Field(100, ge=2)  # held-out activating reports, sampled across deciles
    n_score_control: int = Field(100, ge=2)  # held-out control reports
    n_deciles: int = Field(10, ge=1, le=100)
    n_terms: int = Field(3, ge=1)  # keywords: phrases in a label
    prior_scale: float = Field(10.0, gt=0)  # keywords: strength of the corpus Dirichlet prior
    baseline: bool = True  # score a label of another feature on each feature's held-out set
    llm: LLMConfig | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _needs_endpoint(self) -> InterpretConfig:
        uses_llm = self.method == "llm" or self.judge == "llm"
        if uses_llm and self.llm is None:
            raise ValueError(
                "interpretation: method or judge 'llm' needs interpretation.llm with base_url and model "
                "(an OpenAI-compatible endpoint you host); nothing is sent anywhere without one"
            )
        return self

    def judge_kind(self) -> Literal["keywords", "llm"]:
        return self.method if self.judge == "auto" else self.judge

    def llm_in_use(self) -> LLMConfig | None:
        """The endpoint's config when the explainer or the judge is the LLM, else None."""
        return self.llm if "llm" in (self.method, self.judge_kind()) else None

    def n_candidates(self) -> int:
        return self.llm.n_candidates if self.method == "llm" and self.llm is not None else 1
