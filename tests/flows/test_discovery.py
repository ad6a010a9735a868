"""The discovery flow end to end on a tiny cohort, under Prefect."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from flows.discovery import RunResult


def _artifact_dirs(store: Path) -> dict[str, float]:
    return {
        str(p.relative_to(store)): (p / "manifest.json").stat().st_mtime
        for p in (store / "artifacts").glob("*/*")
        if not p.name.startswith(".")
    }


def _check_prefect_artifact(index: Path) -> None:
    """The flow posted the top hits and the report's path as a markdown artifact."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey, FlowRunFilter, TaskRunFilter
    from prefect.client.schemas.sorting import ArtifactSort

    # every field given: this server version rejects the client's nulls for the defaults
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["medconcepts-report"])),
            flow_run_filter=FlowRunFilter(), task_run_filter=TaskRunFilter(), limit=20, offset=0,
            sort=ArtifactSort.CREATED_DESC)
    md = [a for a in arts if a.type == "markdown" and str(index) in str(a.data)]
    assert md, [a.data for a in arts]
    assert "Top hits" in str(md[0].data) and index.resolve().as_uri() in str(md[0].data)


@pytest.mark.prefect
def test_flow_end_to_end_rerun_and_partial_recompute(local_run: tuple[Path, RunResult]) -> None:
    from flows.discovery import discovery

    config, first = local_run
    store = Path(first.store)
    index = Path(first.report_index)
    assert index.is_file() and "<html" in index.read_text().lower()
    html = index.read_text()
    assert ('aria-label="Manhattan plot' in html or "nothing to plot" in html) and (index.parent / "assets").is_dir()
    report_tables = json.loads((first.report.path / "manifest.json").read_text())["tables"]
    assert {"pages", "manhattan", "fdr_cuts", "forest", "histograms", "thumbnails"} <= set(report_tables)
    _check_prefect_artifact(index)
    record = json.loads(Path(first.run_record).read_text())
    kinds = {a["kind"] for a in record["artifacts"]}
    assert {"studies", "events", "embeddings", "sae", "activations", "feature_stats", "cohorts",
            "outcome_labels", "study_split", "associations", "survival", "interpretations", "report"} <= kinds
    before = _artifact_dirs(store)

    second = discovery(str(config))
    assert second.associations == first.associations and second.report == first.report
    assert _artifact_dirs(store) == before  # nothing rewritten

    shutil.rmtree(first.associations.path)
    third = discovery(str(config))
    after = _artifact_dirs(store)
    changed = {k for k in after if after[k] != before.get(k)}
    assert changed == {f"artifacts/associations/{first.associations.version}"}
    assert third.associations == first.associations


@pytest.mark.slow
@pytest.mark.prefect
def test_flow_on_s3_store_equals_local_run(local_run: tuple[Path, RunResult], s3_endpoint: str,
                                           tmp_path: Path) -> None:
    """The whole flow with its store on S3 (moto on loopback): the same artifact versions and
    table contents as a local store; embedding cache, run record and report land in S3."""
    import uuid

    import s3fs

    from data_contracts.config import dump_run_config, load_run_config
    from data_contracts.store import ArtifactStore
    from flows.discovery import discovery

    local_cfg, local = local_run
    root = f"s3://medconcepts/flow-{uuid.uuid4().hex[:8]}"
    cfg = load_run_config(local_cfg).model_copy(update={"store": root, "report_dir": f"{root}/published"})
    s3_cfg = tmp_path / "s3.yaml"
    dump_run_config(cfg, s3_cfg)
    remote = discovery(str(s3_cfg))
    assert remote.store == root and remote.report_index == f"{root}/published/index.html"
    assert [(r.kind, r.version) for r in remote.artifacts()] == [(r.kind, r.version) for r in local.artifacts()]
    ls, rs = ArtifactStore(local.store), ArtifactStore(root)
    for mod in ("report", "image"):
        a, b = local.modalities[mod], remote.modalities[mod]
        assert ls.read_table(a.embeddings).equals(rs.read_table(b.embeddings))
    assert ls.read_table(local.associations).equals(rs.read_table(remote.associations))
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    keys = fs.find(root.removeprefix("s3://"))
    assert any("/embedding_cache/report/" in k and k.endswith(".parquet") for k in keys)
    assert json.loads(fs.cat_file(remote.run_record))["artifacts"]
    assert "<html" in fs.cat_file(remote.report_index).decode().lower()
