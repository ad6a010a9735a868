"""Merlin image encoder: Merlin's checkpoint key layout, strict loading, forward pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data_contracts.config import MerlinConfig
from models.encoders.merlin import MerlinEncoder, load_checkpoint
from models.encoders.merlin_net import (
    CHECKPOINT_PREFIX,
    CheckpointMismatch,
    I3ResNet,
    load_i3resnet,
    merlin_state_dict,
)


@pytest.fixture(scope="module")
def random_net() -> I3ResNet:
    torch.manual_seed(0)
    net = I3ResNet().eval()
    for m in net.modules():  # non-trivial BN statistics, so eval-mode BN is exercised
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module")
def checkpoint(random_net: I3ResNet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random weights saved as Merlin saves them, with text-encoder keys alongside."""
    state = merlin_state_dict(random_net)
    state["encode_text.text_encoder.embeddings.word_embeddings.weight"] = torch.zeros(4, 3)
    path = tmp_path_factory.mktemp("merlin") / "merlin.pt"
    torch.save(state, path)
    return path


def test_key_layout_is_merlins(random_net: I3ResNet) -> None:
    keys = set(merlin_state_dict(random_net))
    p = CHECKPOINT_PREFIX
    # stem, inflated bottleneck convs, downsample shortcut, BN buffers and both heads
    for k in ("conv1.weight", "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.downsample.0.weight",
              "layer1.0.downsample.1.bias", "layer3.35.conv2.weight", "layer4.2.bn3.weight",
              "classifier.weight", "contrastive_head.bias"):
        assert p + k in keys
    assert p + "layer3.36.conv1.weight" not in keys  # ResNet-152: 3, 8, 36, 3 blocks
    sd = random_net.state_dict()
    assert tuple(sd["conv1.weight"].shape) == (64, 3, 3, 7, 7)
    assert tuple(sd["layer2.0.conv2.weight"].shape) == (128, 128, 3, 3, 3)
    assert tuple(sd["classifier.weight"].shape) == (1692, 2048, 1, 1, 1)
    assert tuple(sd["contrastive_head.weight"].shape) == (512, 2048, 1, 1, 1)


def test_strides_follow_inflation(random_net: I3ResNet) -> None:
    assert random_net.conv1.stride == (1, 2, 2) and random_net.maxpool.stride == 2
    assert random_net.layer2[0].conv2.stride == (2, 2, 2)
    assert random_net.layer2[0].downsample[0].stride == (2, 2, 2)
    assert random_net.layer1[0].conv2.stride == (1, 1, 1)


def test_strict_reload_gives_identical_outputs(random_net: I3ResNet, checkpoint: Path) -> None:
    torch.set_num_threads(1)
    loaded = load_checkpoint(checkpoint)
    x = torch.rand(2, 1, 32, 32, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, got = random_net(x), loaded(x)
        head = loaded.contrastive(got)
    assert got.shape == (2, 2048) and head.shape == (2, 512)
    torch.testing.assert_close(got, want)
    # the head is a 1x1x1 conv on the pooled map: a plain matrix product
    w = loaded.contrastive_head.weight.flatten(1)
    torch.testing.assert_close(head, got @ w.T + loaded.contrastive_head.bias)


def test_forward_matches_channel_repeat_and_permute(random_net: I3ResNet) -> None:
    """Input (B,1,H,W,D) is permuted to (B,1,D,H,W) and repeated to 3 channels."""
    torch.set_num_threads(1)
    x = torch.rand(1, 1, 32, 32, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = random_net(x)
        y = torch.cat([x.permute(0, 1, 4, 2, 3)] * 3, dim=1)
        y = random_net.maxpool(random_net.relu(random_net.bn1(random_net.conv1(y))))
        for layer in (random_net.layer1, random_net.layer2, random_net.layer3, random_net.layer4):
            y = layer(y)
        want = y.mean(dim=(2, 3, 4))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_missing_unexpected_and_misshaped_keys_are_listed(random_net: I3ResNet) -> None:
    state = merlin_state_dict(random_net)
    del state[CHECKPOINT_PREFIX + "layer2.3.bn2.running_mean"]
    state[CHECKPOINT_PREFIX + "fc.weight"] = torch.zeros(2, 2)
    state[CHECKPOINT_PREFIX + "contrastive_head.bias"] = torch.zeros(256)
    with pytest.raises(CheckpointMismatch) as err:
        load_i3resnet(state, source="ckpt.pt")
    msg = str(err.value)
    assert "ckpt.pt" in msg and "missing keys (1): layer2.3.bn2.running_mean" in msg
    assert "unexpected keys (1): fc.weight" in msg
    assert "contrastive_head.bias (256,) != (512,)" in msg


def test_checkpoint_without_image_keys_fails() -> None:
    with pytest.raises(CheckpointMismatch, match=r"missing keys \(\d+\): bn1"):
        load_i3resnet({"encode_text.x": torch.zeros(1)})


def test_config_needs_a_local_checkpoint_unless_download_allowed() -> None:
    with pytest.raises(ValueError, match="checkpoint_path"):
        MerlinConfig()
    with pytest.raises(FileNotFoundError, match="Merlin checkpoint not found"):
        MerlinEncoder(MerlinConfig(checkpoint_path="/nonexistent/merlin.pt"))


def test_encoder_identity_and_bad_items_without_model_load(checkpoint: Path, tmp_path: Path) -> None:
    from pydicom.data import get_testdata_file

    enc = MerlinEncoder(MerlinConfig(checkpoint_path=str(checkpoint), device="cpu", dtype="float32"))
    ident = enc.identity()
    assert len(str(ident["weights_sha256"])) == 64 and ident["dim"] == 2048
    assert ident["preprocessing"]["spacing_mm"] == [1.5, 1.5, 3.0]  # type: ignore[index]
    (tmp_path / "empty").mkdir()
    res = enc.encode([None, str(tmp_path / "nope.nii.gz"), str(tmp_path / "empty"),
                      get_testdata_file("MR_small.dcm")])
    assert res.vectors.shape == (0, 2048) and enc._model is None  # nothing to forward: no load
    assert res.errors[0] == "no image" and "not found" in res.errors[1]
    assert "empty" in res.errors[2] and "Modality is 'MR'" in res.errors[3]


@pytest.mark.slow
def test_encoder_end_to_end_full_size(checkpoint: Path) -> None:
    """A real CT slice through preprocessing and the full 224x224x160 forward (~45 s on 2 cores)."""
    from pydicom.data import get_testdata_file

    enc = MerlinEncoder(MerlinConfig(checkpoint_path=str(checkpoint), device="cpu", dtype="float32",
                                     output="contrastive"))
    res = enc.encode([get_testdata_file("CT_small.dcm")])
    assert res.vectors.shape == (1, 512) and np.isfinite(res.vectors).all()
