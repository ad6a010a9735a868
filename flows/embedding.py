"""Embedding wiring shared by the discovery and backfill flows: plan the month partitions
that still lack embeddings, spread them over `workers` tasks (tagged `gpu` for GPU
encoders), then assemble the `embeddings` artifact. Planning, partitions and assembly are
all submitted to the run's task runner under the same GPU request, so on a Dask cluster
they run where the encoder runs and agree on its identity (device and dtype included)."""

from __future__ import annotations

from prefect.futures import wait

from data_contracts.config import ModalityConfig
from data_contracts.store import ArtifactRef
from flows.runner import gpu_slot
from tasks.encoders import embed, embed_partitions, encoder_tags, plan_embedding, split_partitions


def fill_partitions(root: str, studies: ArtifactRef, m: ModalityConfig, images_root: str, gpu: bool = False,
                    since: str | None = None, until: str | None = None) -> dict[str, int]:
    """Embed the missing studies of every month in [since, until]; {month: computed}.
    `images_root`: the studies file's folder, against which relative image paths resolve."""
    tags = encoder_tags(m)
    with gpu_slot(gpu):
        months = plan_embedding.with_options(tags=tags).submit(root, studies, m, since, until, images_root).result()
        task = embed_partitions.with_options(tags=tags)
        futures = [task.submit(root, studies, m, group, images_root) for group in split_partitions(months, m.workers)]
    # Let every partition finish before reading any result: `.result()` alone would raise on the
    # first failure and the flow's exit would cancel partitions still waiting for a `gpu` slot.
    wait(futures)
    counts: dict[str, int] = {}
    for f in futures:
        counts.update(f.result())
    return counts


def embed_modality(root: str, studies: ArtifactRef, m: ModalityConfig, images_root: str,
                   gpu: bool = False) -> ArtifactRef:
    fill_partitions(root, studies, m, images_root, gpu)
    with gpu_slot(gpu):
        return embed.with_options(tags=encoder_tags(m)).submit(root, studies, m, images_root).result()
