"""Embedding wiring shared by the discovery and backfill flows: plan the month partitions
that still lack embeddings, spread them over `workers` tasks (tagged `gpu` for GPU
encoders), then assemble the `embeddings` artifact."""

from __future__ import annotations

from prefect.futures import wait

from data_contracts.config import ModalityConfig
from data_contracts.store import ArtifactRef
from tasks.encoders import embed, embed_partitions, encoder_tags, plan_embedding, split_partitions


def fill_partitions(root: str, studies: ArtifactRef, m: ModalityConfig, images_root: str,
                    since: str | None = None, until: str | None = None) -> dict[str, int]:
    """Embed the missing studies of every month in [since, until]; {month: computed}.
    `images_root`: the studies file's folder, against which relative image paths resolve."""
    months = plan_embedding(root, studies, m, since, until, images_root)
    task = embed_partitions.with_options(tags=encoder_tags(m))
    futures = [task.submit(root, studies, m, group, images_root) for group in split_partitions(months, m.workers)]
    # Let every partition finish before reading any result: `.result()` alone would raise on the
    # first failure and the flow's exit would cancel partitions still waiting for a `gpu` slot.
    wait(futures)
    counts: dict[str, int] = {}
    for f in futures:
        counts.update(f.result())
    return counts


def embed_modality(root: str, studies: ArtifactRef, m: ModalityConfig, images_root: str) -> ArtifactRef:
    fill_partitions(root, studies, m, images_root)
    return embed(root, studies, m, images_root)
