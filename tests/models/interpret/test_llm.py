"""The LLM interpreter against a scripted OpenAI-compatible server on loopback: prompts,
best-of-k, the reply cache, retries, timeouts and malformed replies (each a flag, never a
crash)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from data_contracts.config import InterpretConfig, LLMConfig
from models.interpret.client import ChatClient
from models.interpret.driver import FAILED_LABEL
from models.interpret.features import interpret_features
from tests.models.interpret.fake_openai import FakeOpenAI, Response, chat
from tests.models.interpret.synthetic import FINDINGS, synthetic

# What the scripted "model" calls each planted finding, and the words its judge looks for.
NAMES = {0: "cirrhotic liver with varices", 1: "coronary artery calcification", 2: "pleural effusion"}
CUES = {"cirrhotic liver with varices": "cirrhotic", "coronary artery calcification": "coronary",
        "pleural effusion": "small right pleural effusion", "bowel loops": "bowel loops"}


def _section(text: str, start: str, end: str | None) -> str:
    a = text.index(start)
    return text[a : text.index(end, a)] if end else text[a:]


def smart_script(body: dict[str, Any]) -> Response:
    """Explainer: names the finding most frequent among the ACTIVE reports (seed 0), a wrong
    name (seed 1), or malformed text (seed 2). Judge: Yes when the report holds the cue."""
    user = body["messages"][-1]["content"]
    if user.startswith("Finding:"):
        label = user.split("\n", 1)[0][len("Finding: "):]
        report = _section(user, "Report:", "Does this report")
        yes = CUES[label] in report.lower()
        return chat("Yes" if yes else "No", [("Yes", -0.05 if yes else -3.0), ("No", -3.0 if yes else -0.05)])
    active = _section(user, "ACTIVE reports", "NOT ACTIVE").lower()
    counts = {i: active.count(FINDINGS[i].lower().rstrip(".")) for i in NAMES}
    best = NAMES[max(counts, key=lambda i: counts[i])]
    seed = body.get("seed", 0)
    if seed == 1:
        return chat('{"label": "bowel loops", "explanation": "Bowel is described."}')
    if seed == 2:
        return chat("The reports share something about the abdomen.")
    return chat(f'```json\n{{"label": "{best}", "explanation": "The active reports describe {best}."}}\n```')


def _cfg(url: str, **llm: Any) -> InterpretConfig:
    base = {"base_url": url, "model": "fake-model", "n_candidates": 3, "backoff_s": 0.0, "concurrency": 4}
    return InterpretConfig(method="llm", n_score_top=20, n_score_control=20, n_top=40, n_control=60,
                           llm=LLMConfig(**(base | llm)))


def _three_features() -> tuple[pd.Series, pd.DataFrame]:
    reports, cohorts = synthetic(360, 3, seed=1)
    return reports, cohorts


def test_llm_names_best_of_k_scores_and_caches(tmp_path: Path) -> None:
    reports, cohorts = _three_features()
    subjects = pd.Series([f"p{i // 2}" for i in range(len(reports))], index=reports.index)  # 2 studies a patient
    with FakeOpenAI(smart_script) as srv:
        cfg = _cfg(srv.url, n_explain_top=8, n_explain_control=6)
        out = interpret_features(cohorts, reports, cfg, "report", subjects, tmp_path / "cache")
        sent = srv.chat_requests()
        again = interpret_features(cohorts, reports, cfg, "report", subjects, tmp_path / "cache")
        assert len(srv.chat_requests()) == len(sent)  # a rerun sends nothing
    pd.testing.assert_frame_equal(out, again)
    assert list(out["label"]) == [NAMES[0], NAMES[1], NAMES[2]]  # best of 3 beat "bowel loops"
    assert (out["n_candidates"] == 3).all() and (out["method"] == "llm").all() and (out["judge"] == "llm").all()
    assert out["flag"].str.contains("candidates_failed: malformed 1").all()
    assert (out["heldout_balanced_accuracy"] > 0.75).all() and out["auroc"].notna().all()  # 80% carry it
    assert (out["baseline_balanced_accuracy"] < 0.65).all()
    assert out["explanation"].str.startswith("The active reports describe").all()
    explain = [b for b in sent if b["messages"][-1]["content"].startswith("ACTIVE")]
    assert len(explain) == 9 and {b["seed"] for b in explain} == {0, 1, 2}
    assert {b["temperature"] for b in explain if b["seed"] == 0} == {0.0}
    user = explain[0]["messages"][-1]["content"]
    assert len(re.findall(r"^\d+\. ", _section(user, "ACTIVE", "NOT ACTIVE"), re.M)) == 8
    judge = [b for b in sent if b["messages"][-1]["content"].startswith("Finding:")]
    assert judge and all(b["max_tokens"] == 1 and b["logprobs"] and b["temperature"] == 0 for b in judge)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (chat(""), "empty"),
        (Response(200, "this is not json"), "non_json"),
        (Response(200, {"unexpected": True}), "malformed"),
        (chat("I'm sorry, but I can't help with medical records."), "refusal"),
        (chat('{"label": ""}'), "malformed"),
        (Response(500, {"error": "boom"}), "http_500"),
        (Response(400, {"error": "bad request"}), "http_400"),
    ],
)
def test_bad_replies_become_flags(reply: Response, reason: str, tmp_path: Path) -> None:
    reports, cohorts = _three_features()
    with FakeOpenAI(lambda body: reply) as srv:
        cfg = _cfg(srv.url, n_candidates=1, max_retries=1)
        out = interpret_features(cohorts, reports, cfg, "report", cache_dir=tmp_path)
    assert (out["label"] == FAILED_LABEL).all()
    assert out["flag"].str.startswith(f"no_label: {reason} 1").all()
    assert out["heldout_balanced_accuracy"].isna().all()
    retried = reason == "http_500"
    assert len(srv.requests) == 3 * (2 if retried else 1)


def test_slow_server_times_out_and_judge_failures_are_counted(tmp_path: Path) -> None:
    reports, cohorts = _three_features()

    def script(body: dict[str, Any]) -> Response:
        user = body["messages"][-1]["content"]
        if user.startswith("ACTIVE"):
            return chat('{"label": "pleural effusion"}')
        if re.search(r"case (1|3|5)\.", user):  # a few reports hang
            return Response(delay_s=1.0, body=chat("Yes").body)
        return chat("No")  # no log-probs: yes/no from the text, not graded

    with FakeOpenAI(script) as srv:
        cfg = _cfg(srv.url, n_candidates=1, max_retries=0, timeout_s=0.2)
        cfg = cfg.model_copy(update={"n_score_top": 200, "n_score_control": 200})
        out = interpret_features(cohorts, reports, cfg, "report", cache_dir=tmp_path)
    assert (out["label"] == "pleural effusion").all() and out["auroc"].isna().all()
    flags = " ".join(out["flag"].dropna())
    assert "judge_failed" in flags and "timeout" in flags
    assert (out["n_heldout_top_hits"] == 0).all()


def test_retry_after_429_then_success() -> None:
    calls: list[int] = []

    def script(body: dict[str, Any]) -> Response:
        calls.append(1)
        if len(calls) <= 2:
            return Response(429, {"error": "slow down"}, {"Retry-After": "0"})
        return chat("ok")

    waits: list[float] = []
    with FakeOpenAI(script) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", max_retries=3, backoff_s=5.0)
        with ChatClient(cfg, None, sleep=waits.append) as client:
            reply = client.complete([{"role": "user", "content": "hi"}], {"max_tokens": 2})
    assert reply.text == "ok" and reply.error is None
    assert len(calls) == 3 and waits == [0.0, 0.0] and client.stats["retries"] == 2


def test_api_key_only_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeOpenAI(lambda body: chat("ok")) as srv:
        cfg = LLMConfig(base_url=srv.url, model="m", api_key_env="MEDCONCEPTS_TEST_KEY")
        monkeypatch.delenv("MEDCONCEPTS_TEST_KEY", raising=False)
        with pytest.raises(ValueError, match="MEDCONCEPTS_TEST_KEY is not set"):
            ChatClient(cfg)
        monkeypatch.setenv("MEDCONCEPTS_TEST_KEY", "s3cret")
        with ChatClient(cfg) as client:
            client.complete([{"role": "user", "content": "hi"}], {})
        assert srv.requests[-1]["auth"] == "Bearer s3cret"
    assert "s3cret" not in InterpretConfig(method="llm", llm=cfg).model_dump_json()


def test_endpoint_must_be_local_unless_allowed() -> None:
    for url in ("http://127.0.0.1:8000/v1", "http://vllm:8000/v1", "http://10.1.2.3/v1",
                "http://llm.hospital.internal/v1", "http://[::1]:8080/v1"):
        LLMConfig(base_url=url, model="m")
    with pytest.raises(ValidationError, match="outside this machine"):
        LLMConfig(base_url="https://api.example.com/v1", model="m")
    LLMConfig(base_url="https://api.example.com/v1", model="m", allow_remote_host=True)
    with pytest.raises(ValidationError, match=r"needs interpretation\.llm"):
        InterpretConfig(method="llm")


def test_reports_are_capped_and_redacted(tmp_path: Path) -> None:
    texts = ["Seen by Dr. Smith on 03/04/2021 at 10:30 am, MRN 12345678. Small right pleural effusion. " * 3,
             "No effusion."] * 10
    reports = pd.Series(texts, index=[f"s{i}" for i in range(20)])
    cohorts = pd.DataFrame({"feature_id": np.int32(0), "study_id": reports.index,
                            "role": ["exposed", "control"] * 10, "value": [1.0, 0.0] * 10})
    with FakeOpenAI(lambda body: chat('{"label": "pleural effusion"}')) as srv:
        cfg = _cfg(srv.url, n_candidates=1, max_report_chars=120)
        interpret_features(cohorts, reports, cfg, "report", cache_dir=tmp_path)
        bodies = " ".join(str(b) for b in srv.chat_requests())
    assert "Smith" not in bodies and "03/04/2021" not in bodies and "12345678" not in bodies
    assert "Dr. [name]" in bodies and "[date]" in bodies and "pleural effusion" in bodies
    shown = [m.group(1) for b in srv.chat_requests()
             if (m := re.search(r"Report:\n(.*)\n\nDoes", b["messages"][-1]["content"], re.S))]
    assert shown and max(len(t) for t in shown) <= 120 and any(t.endswith("...") for t in shown)


def test_prompt_files_ship_with_the_package() -> None:
    """A non-editable install must carry every prompt: the package-data globs cover them."""
    from fnmatch import fnmatch
    from importlib import resources

    text = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    m = re.search(r'^"models\.interpret" = \[(.*?)\]', text.split("[tool.setuptools.package-data]", 1)[1], re.M)
    assert m, "pyproject.toml: [tool.setuptools.package-data] has no models.interpret entry"
    globs = re.findall(r'"([^"]+)"', m.group(1))
    names = [f.name for f in resources.files("models.interpret").joinpath("prompts").iterdir()]
    assert {"explain_system.txt", "explain_user.txt", "judge_system.txt", "judge_user.txt"} <= set(names)
    assert all(any(fnmatch(f"prompts/{n}", g) for g in globs) for n in names)
