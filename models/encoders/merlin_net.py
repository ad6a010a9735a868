"""Merlin's image encoder, written here: an I3D-inflated ResNet-152 (Carreira & Zisserman's
inflation of a 2-D ImageNet ResNet into 3-D), with module and parameter names that match
the `encode_image.i3_resnet.*` keys of Merlin's released checkpoint.

Merlin's own package builds this network from `torchvision.models.resnet152(pretrained=True)`,
which downloads ImageNet weights at construction and needs torchvision; both are
unnecessary when the released checkpoint overwrites every parameter anyway.

Inflation, as Merlin applies it: the 7x7 stem becomes 3x7x7 with stride (1, 2, 2); the
3x3 max-pool becomes 3x3x3 with stride 2 in every axis; in each bottleneck the 3x3 conv
becomes 3x3x3 with the temporal (here: axial, z) stride equal to the spatial stride, and
the 1x1 convs (and the downsample shortcut, with the same stride) become 1x1x1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

RESNET152_BLOCKS = (3, 8, 36, 3)
EHR_CLASSES = 1692  # Merlin's phenotype head; kept so the checkpoint loads strictly
CONTRASTIVE_DIM = 512
POOLED_DIM = 2048
CHECKPOINT_PREFIX = "encode_image.i3_resnet."


class Bottleneck3d(nn.Module):
    """torchvision's Bottleneck (stride on the 3x3 conv), inflated."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != out:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, out, kernel_size=1, stride=stride, bias=False), nn.BatchNorm3d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    first = Bottleneck3d(inplanes, planes, stride)
    rest = [Bottleneck3d(planes * Bottleneck3d.expansion, planes, 1) for _ in range(blocks - 1)]
    return nn.Sequential(first, *rest)


class I3ResNet(nn.Module):
    """Input (B, 1, H, W, D) volumes in [0, 1] (x, y, z after Merlin's preprocessing).
    `forward` returns the 2048-d pooled feature; `contrastive` maps it to the 512-d head."""

    def __init__(self, blocks: tuple[int, int, int, int] = RESNET152_BLOCKS) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        widths, inplanes = (64, 128, 256, 512), 64
        for i, (planes, n) in enumerate(zip(widths, blocks, strict=True)):
            setattr(self, f"layer{i + 1}", _layer(inplanes, planes, n, 1 if i == 0 else 2))
            inplanes = planes * Bottleneck3d.expansion
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.classifier = nn.Conv3d(POOLED_DIM, EHR_CLASSES, kernel_size=1, bias=True)
        self.contrastive_head = nn.Conv3d(POOLED_DIM, CONTRASTIVE_DIM, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W, D) volumes, got shape {tuple(x.shape)}")
        x = x.permute(0, 1, 4, 2, 3)  # (B, 1, D, H, W): z is the inflated "time" axis
        x = x.expand(-1, 3, -1, -1, -1)  # the ImageNet stem expects 3 channels
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in ("layer1", "layer2", "layer3", "layer4"):
            x = getattr(self, name)(x)
        return self.avgpool(x).flatten(1)

    def contrastive(self, pooled: torch.Tensor) -> torch.Tensor:
        """Merlin's 512-d image feature (the 1x1x1 conv head on the pooled map)."""
        return self.contrastive_head(pooled[:, :, None, None, None]).flatten(1)


class CheckpointMismatch(ValueError):
    """The checkpoint does not fit the network; the message lists what differs."""


def _listing(title: str, keys: list[str], limit: int = 20) -> str:
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{title} ({len(keys)}): {', '.join(keys[:limit])}{more}"


def image_state_dict(checkpoint: Mapping[str, object], prefix: str = CHECKPOINT_PREFIX) -> dict[str, torch.Tensor]:
    """The image-encoder tensors of a Merlin checkpoint, prefix stripped. Accepts a bare
    state dict or one wrapped under 'state_dict' / 'model' (training checkpoints)."""
    for wrapper in ("state_dict", "model"):
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping) and not any(str(k).startswith(prefix) for k in checkpoint):
            checkpoint = inner
    return {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix) and isinstance(v, torch.Tensor)}


def check_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise CheckpointMismatch listing missing, unexpected and wrongly shaped keys."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    shapes = sorted(f"{k} {tuple(state[k].shape)} != {want[k]}" for k in set(want) & set(state)
                    if tuple(state[k].shape) != want[k])
    if missing or unexpected or shapes:
        parts = [_listing(t, ks) for t, ks in (("missing keys", missing), ("unexpected keys", unexpected),
                                               ("shape mismatches", shapes)) if ks]
        raise CheckpointMismatch(
            f"{source}: not a Merlin image-encoder checkpoint (keys under '{CHECKPOINT_PREFIX}'): "
            + "; ".join(parts) + ". Use the released checkpoint "
            "i3_resnet_clinical_longformer_best_clip_04-02-2024_23-21-36_epoch_99.pt."
        )


def load_i3resnet(checkpoint: Mapping[str, object], source: str = "checkpoint") -> I3ResNet:
    """Build the network without initialising it (meta device) and load the checkpoint
    strictly; eval mode, float32, on CPU."""
    state = image_state_dict(checkpoint)
    with torch.device("meta"):
        model = I3ResNet()
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True, assign=True)
    return model.float().eval()


def merlin_state_dict(model: I3ResNet) -> dict[str, torch.Tensor]:
    """The model's tensors under Merlin's checkpoint key layout."""
    return {CHECKPOINT_PREFIX + k: v for k, v in model.state_dict().items()}
