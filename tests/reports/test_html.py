"""Tests of the HTML report's files: escaping, no external resources, shared assets, links
that resolve, missing values, figures present, small-cell suppression and identifiers,
size caps, and numbers checked against an independent computation from the 2x2 counts.
(The browser test opens the same report in Chromium.)"""

from __future__ import annotations

import re
from html import escape, unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.config import FeatureRef, ReportConfig
from data_contracts.report_tables import ReportTables
from data_contracts.schemas import ASSOCIATIONS, INTERPRETATIONS
from models.figures.build import report_tables
from reports.cells import SmallCells
from reports.html import page_name, render_report
from tests.reports import fixtures as fx

LISTED = (FeatureRef(modality="image", feature_id=3),)  # image features never rank here: listed for a page


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("report") / "report"
    return out, fx.render_fixture(out, ReportConfig(top_per_outcome=3, title="Test report", pages=LISTED))


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same report with suppression off (small_cell 0) and identifiers shown."""
    out = tmp_path_factory.mktemp("exact") / "report"
    fx.render_fixture(out, ReportConfig(top_per_outcome=3, small_cell=0, show_ids=True, pages=LISTED))
    return out


def _text(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def _visible(html: str) -> str:
    """Text as a reader sees it (tags dropped, entities decoded)."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def test_written_paths_and_links_resolve(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    assert paths[0] == out / "index.html" and all(p.exists() for p in paths)
    assert (out / "assets" / "report.css").is_file() and (out / "assets" / "report.js").is_file()
    for p in paths:
        for href in re.findall(r'(?:href|src)="([^"#][^"]*)"', _text(p)):
            if not href.startswith("data:image/png;base64,"):
                assert (p.parent / href).resolve().exists(), (p.name, href)
    # pages: the ranked features and the listed one, nothing else
    assert sorted(p.name for p in paths[1:]) == sorted(page_name(*k) for k in [("report", 3), ("report", 1),
                                                                             ("image", 3)])


def test_report_text_is_escaped(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    page = _text(paths[0].parent / "features" / page_name("report", 3))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;varices&lt;/b&gt;" in page and "unit &lt;test&gt;" in page
    for p in paths:
        assert "<script>alert" not in _text(p) and "<b>varices" not in _text(p)


def test_no_external_resources_and_no_inline_code(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    for p in paths:
        t = _text(p)
        assert not fx.EXTERNAL.search(t), p.name
        assert "@import" not in t and "<style" not in t and " style=" not in t
        links = re.findall(r"<link[^>]*>", t)
        assert links == [f'<link rel="stylesheet" href="{"../" if p.parent.name == "features" else ""}'
                         'assets/report.css">']
        assert re.findall(r"<script[^>]*>", t) == [f'<script src="{"../" if p.parent.name == "features" else ""}'
                                                  'assets/report.js">']
        assert "Content-Security-Policy" in t and "default-src 'none'" in t


def test_sorting_script_and_tables(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    index = _text(paths[0])
    assert '<table id="all-rows" class="sortable compact">' in index and 'class="filter"' in index
    js = _text(out / "assets" / "report.js")
    assert "querySelectorAll('table.sortable')" in js and "localeCompare" in js
    table = index.split('id="all-rows"')[1].split("</table>")[0]
    a = fx.associations()
    assert table.count("<tr") == 1 + int((a["split"] == "discovery").sum())  # validation rows: artifact only
    assert "<th>Replicated</th>" in table


def test_index_and_feature_figures(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    index = _text(paths[0])
    assert 'aria-label="Manhattan plot' in index and 'aria-label="Volcano plot' in index
    man = index.split('aria-label="Manhattan plot')[1].split("</svg>")[0]
    assert man.count("<circle") == int(fx.associations().query("split == 'discovery'")["score_p"].notna().sum())
    assert 'href="features/report_3.html"' in man and ">report #3</text>" in man  # rank 1: linked and labelled
    assert 'class="cut' in man and 'href="#o-liver_cancer"' in man
    page = _text(out / "features" / page_name("report", 3))
    for label in ("activation histogram", "forest plot of adjusted odds ratios", "cumulative incidence"):
        assert f'aria-label="{label}"' in page, label
    assert "<th>At risk</th>" in page
    img = _text(out / "features" / page_name("image", 3))
    assert img.count('src="data:image/png;base64,') == 2 * 5  # 4 top + 2 controls, one without an image
    assert "image unavailable (no image)" in img and "Mid-axial" in img
    assert "CT slices" not in page  # report features: no thumbnails


def test_missing_values_render_as_dash(rendered: tuple[Path, list[Path]]) -> None:
    _, paths = rendered
    for p in paths:
        visible = re.sub(r"<script>.*?</script>|<style>.*?</style>", "", _text(p), flags=re.S)
        assert not re.search(r"\bnan\b|>None<|\bNaT\b|&lt;NA&gt;", visible, re.IGNORECASE), p.name
    index = _text(paths[0])
    row = next(r for r in index.split("<tr") if "image #5" in r and "feature not testable" in r)
    assert row.count(">–<") >= 4  # rank, OR (95% CI), p, q


def test_small_counts_are_suppressed_everywhere(rendered: tuple[Path, list[Path]]) -> None:
    out, paths = rendered
    for p in paths:
        t = _text(p)
        for n in re.findall(r'<span class="n">([^<]*)</span>', t):
            assert not re.fullmatch(r"[1-9]|10", n), (p.name, n)
        for v in re.findall(r'data-v="([^"]*)"><span class="n">', t):  # nor do the count cells' sort keys
            assert not re.fullmatch(r"[1-9](\.0)?", v), (p.name, v)
    page = _text(out / "features" / page_name("report", 3))
    assert ">39/50 vs <11/150" in _visible(page) and "≈0.9" in page  # 43/50 vs 7/150 held out
    km = page.split("<h2>Cumulative incidence</h2>")[1].split("<h2>")[0]
    assert "suppressed (&lt;11 events)" in km
    assert "km-exposed" not in km and "km-unexposed" in km  # 5 exposed events: no exposed curve


def test_no_identifiers_unless_asked(rendered: tuple[Path, list[Path]], exact: Path) -> None:
    _, paths = rendered
    for p in paths:
        assert not re.search(r"\bS\d+_\d+\b|IMG-", _text(p)), p.name
    shown = _text(exact / "features" / page_name("report", 3)) + _text(exact / "features" / page_name("image", 3))
    assert "study S3_3" in shown and "study IMG-" in shown


def test_numbers_match_independent_computation(exact: Path) -> None:
    a = fx.associations()
    r = a[(a.modality == "report") & (a.feature_id == 3) & (a.outcome_id == "liver_cancer")].iloc[0]
    p_exp = r.n_exposed_cases / r.n_exposed
    share = r.n_exposed / (r.n_exposed + r.n_unexposed)
    index = _text(exact / "index.html")
    top = index.split('id="o-liver_cancer"')[1].split("</table>")[0]
    first = _visible(top.split("<tbody>")[1].split("</tr>")[0])
    assert f"1 of {fx.N_FEATURES}" in first and "report #3" in first  # rank r of n tested
    assert f"{r.adj_odds_ratio:.3g} ({r.adj_or_ci_low:.3g}–{r.adj_or_ci_high:.3g})" in first
    assert "yes" in first  # replicated
    assert f"{100 * p_exp:.1f}%" in first and f"({100 * share:.1f}%)" in first
    assert f"{r.odds_ratio:.3g} ({r.or_ci_low:.3g}–{r.or_ci_high:.3g})" in first
    assert "0.91" in first and "43/50 vs 7/150" in first
    page = _text(exact / "features" / page_name("report", 3))
    assert "0.91 [0.84–0.95]" in _visible(page) and "scores 0.48 on the same reports" in page
    assert page.count('<article class="report">') == 8
    assert "<mark>cirrhotic liver</mark>" in page.lower()
    assert "(no report text)" in page


def test_untestable_features_listed(rendered: tuple[Path, list[Path]]) -> None:
    index = _text(rendered[1][0])
    assert "<details><summary>report: 2 of 8 features not testable</summary>" in index
    assert "dead: never fires" in index


def test_empty_associations_still_render(tmp_path: Path) -> None:
    empty = pd.DataFrame(columns=ASSOCIATIONS.schema.names)
    tables = report_tables(empty, ReportConfig(), 0.05)
    paths = render_report(tmp_path, empty, fx.interpretations().iloc[:0], fx.stats(), fx.top_reports().iloc[:0],
                          fx.OUTCOMES, {}, ReportConfig(), tables=tables)
    assert paths == [tmp_path / "index.html"]
    assert "No feature could be tested" in _text(paths[0])


def test_all_rows_table_is_capped(tmp_path: Path) -> None:
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    render_report(tmp_path, assoc, fx.roundtrip(fx.interpretations(), INTERPRETATIONS.schema),
                  fx.stats(), fx.top_reports(), fx.OUTCOMES, {"run": "t"}, ReportConfig(max_table_rows=5))
    html = _text(tmp_path / "index.html")
    table = html.split('id="all-rows"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr") == 1 + 5  # header + capped rows
    n_disc = int((assoc["split"] == "discovery").sum())  # the report shows the discovery rows
    assert f"5 of {n_disc}" in html


def test_size_caps_drop_weakest_pages_and_trim_evidence(tmp_path: Path) -> None:
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    reports = fx.top_reports().assign(report_text="x" * 30_000)
    cfg = ReportConfig(max_page_kb=40, max_report_chars=30_000, max_total_mb=0.08, pages=LISTED)
    tables = report_tables(assoc, cfg, 0.05)
    paths = render_report(tmp_path, assoc, fx.interpretations(), fx.stats(), reports, fx.OUTCOMES, {}, cfg,
                          tables=tables)
    pages = paths[1:]
    assert all(p.stat().st_size <= 40_000 for p in pages)
    assert "Evidence trimmed" in _text(pages[0])
    assert sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file()) <= 80_000
    order = tables.pages.sort_values("priority")
    assert [p.name for p in pages] == [page_name(m, f) for m, f in zip(order["modality"], order["feature_id"],
                                                                        strict=True)][: len(pages)]
    assert len(pages) < len(order) and "report size limit" in _text(paths[0])


def test_survival_section_renders_curve_and_at_risk() -> None:
    from models.stats.survival import km_curve
    from reports.survival import survival_section

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"time_days": rng.uniform(10, 1461, 200), "event": rng.uniform(size=200) < 0.3,
                      "exposed": (np.arange(200) < 60).astype(int)})
    curve = km_curve(d, 4 * 365.25).assign(modality="report", feature_id=3, outcome_id="liver_cancer",
                                           split="discovery")
    surv = pd.DataFrame([{"modality": "report", "feature_id": 3, "outcome_id": "liver_cancer",
                          "split": "discovery", "rank": 1, "hazard_ratio": 2.5, "hr_ci_low": 1.5,
                          "hr_ci_high": 4.0, "n_events": int(d.event.sum()),
                          "n_exposed_events": int(d.event[d.exposed == 1].sum()), "cuminc_exposed": 0.31,
                          "cuminc_exposed_low": 0.2, "cuminc_exposed_high": 0.4, "cuminc_unexposed": 0.1,
                          "cuminc_unexposed_low": 0.05, "cuminc_unexposed_high": 0.15, "logrank_p": 1e-4,
                          "flag": None}])
    html = survival_section(surv, curve, "liver_cancer", lambda m, f: f"{m} #{f}", SmallCells(10))
    assert "<svg" in html and html.count("<polyline") == 2 * (1 + ("aj_cum_incidence" in curve.columns))
    n0 = int((d.loc[d.exposed == 1, "time_days"] >= 365.25).sum())
    assert re.search(rf'data-v="{n0}(\.0)?"><span class="n">{n0}<', html) and "2.5 (1.5–4)" in html
    assert "31.0%" in html
    assert survival_section(surv, curve, "heart_failure", str, SmallCells(10)) == ""


def test_or_per_sd_column_only_when_present(rendered: tuple[Path, list[Path]], tmp_path: Path) -> None:
    assert "OR per SD" not in _text(rendered[1][0])
    a = fx.associations()
    hit = (a.modality == "report") & (a.feature_id == 3) & (a.outcome_id == "liver_cancer")
    a.loc[hit, ["sd_odds_ratio", "sd_ci_low", "sd_ci_high"]] = [1.87, 1.41, 2.49]
    render_report(tmp_path, fx.roundtrip(a, ASSOCIATIONS.schema), fx.roundtrip(fx.interpretations(),
                  INTERPRETATIONS.schema), fx.stats(), fx.top_reports(), fx.OUTCOMES, {"run": "t"},
                  ReportConfig(top_per_outcome=3), tables=ReportTables())
    top = _text(tmp_path / "index.html").split('id="o-liver_cancer"')[1].split("</table>")[0]
    assert "<th" in top and "OR per SD (95% CI)" in top
    first = top.split("<tbody>")[1].split("</tr>")[0]
    assert "1.87 (1.41–2.49)" in first and "report #3" in first


def test_columns_of_other_stages_render_when_present(tmp_path: Path) -> None:
    """Aalen-Johansen beside 1 - KM, the associations' methods statement, and studies left
    out for short follow-up (with the baseline over the rest), all under suppression."""
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    surv, curves = fx.survival_frames()
    surv = surv.assign(aj_cuminc_exposed=0.07, aj_cuminc_unexposed=0.11)
    curves = curves.assign(aj_cum_incidence=curves["cum_incidence"] * 0.9)
    outcomes = fx.OUTCOMES.assign(n_excluded_followup=[200, 5])
    methods = pd.DataFrame({"topic": ["BH family"], "statement": ["per split, all pairs <pooled>"]})
    cfg = ReportConfig(top_per_outcome=3)
    render_report(tmp_path, assoc, fx.interpretations(), fx.stats(), fx.top_reports(), outcomes, {}, cfg, surv,
                  curves, report_tables(assoc, cfg, 0.05), methods)
    index = _text(tmp_path / "index.html")
    assert "<dt>BH family</dt><dd>per split, all pairs &lt;pooled&gt;</dd>" in index
    row = _visible(index.split("<h2>Outcomes</h2>")[1].split("</tr>")[1])
    assert f"{100 * 40 / 800:.1f}%" in row and "200" in row  # 40 cases / (1000 eligible - 200 left out)
    row2 = _visible(index.split("<h2>Outcomes</h2>")[1].split("</tr>")[2])
    assert "<11" in row2 and "5" not in row2.split("%")[1]  # 5 left out: suppressed
    block = index.split("<h3>Time to event, top hits</h3>")[1]
    assert "Aalen–Johansen exposed / unexposed" in block and "Cause-specific HR" in block
    assert "&lt;11 events / 11.0%" in block  # exposed AJ suppressed (5 events), unexposed shown
    assert 'class="km-unexposed aj"' in block and 'class="km-exposed' not in block


def test_same_inputs_give_the_same_bytes(rendered: tuple[Path, list[Path]], tmp_path: Path) -> None:
    out, paths = rendered
    again = fx.render_fixture(tmp_path / "report", ReportConfig(top_per_outcome=3, title="Test report", pages=LISTED))
    assert [p.relative_to(tmp_path / "report") for p in again] == [p.relative_to(out) for p in paths]
    for a, b in zip(paths, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_methods_table_is_printed_as_given(tmp_path: Path) -> None:
    from data_contracts.config import AssociationConfig
    from models.stats.methods import association_methods

    methods = association_methods(AssociationConfig(firth=True, fdr_family="modality_outcome"))
    assoc = fx.roundtrip(fx.associations(), ASSOCIATIONS.schema)
    render_report(tmp_path, assoc, fx.roundtrip(fx.interpretations(), INTERPRETATIONS.schema), fx.stats(),
                  fx.top_reports(), fx.OUTCOMES, {}, ReportConfig(), methods=methods)
    page = _text(tmp_path / "index.html")
    for topic, statement in methods.itertuples(index=False):
        assert f"<dt>{topic}</dt><dd>{escape(statement, quote=True)}</dd>" in page
    assert "profile penalised likelihood" in page and "each (half, modality, outcome)" in page
