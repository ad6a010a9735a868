"""What the association statistics are, in words, from the config that produced them: a
fixed-column table (topic, statement) that the report prints as it is, so every number in
it names its estimator, its multiple-testing family and its replication rule."""

from __future__ import annotations

import pandas as pd

from data_contracts.config import AssociationConfig

COLUMNS = ["topic", "statement"]
_KEYS = {"adj_or_ci_low": "the lower 95% bound of the adjusted OR, largest first",
         "adj_odds_ratio": "the adjusted OR, largest first", "adj_p_value": "the adjusted p, smallest first",
         "or_ci_low": "the lower 95% bound of the crude OR, largest first"}


def _may_rank(cfg: AssociationConfig) -> str:
    return (f"pairs with adjusted score-test q < {cfg.alpha:g} and at least {cfg.min_exposed_cases} "
            "exposed cases in the discovery half")


def _estimator(cfg: AssociationConfig) -> tuple[str, str, str]:
    if cfg.rank_estimator == "score":
        return ("Age+sex adjusted score test only: the adjusted OR is its one-step estimate exp(U/V) for "
                "every tested pair (biased toward 1 for strong effects; the statistic ranks, not the OR)",
                "score-test p (chi-square, 1 df)", "exp(U/V ± 1.96 / sqrt(V))")
    fits = (f"an exact fit of every pair that may rank ({_may_rank(cfg)}), in both halves"
            + (f", at most {cfg.exact_top_m} per modality and outcome by score p (pairs beyond are flagged, "
               "not ranked)" if cfg.exact_top_m is not None else "")
            + (f", plus the {cfg.exact_top_m} best by score p per modality and outcome for display"
               if cfg.exact_select == "top" else ""))
    if cfg.firth:
        return ("Firth's penalised logistic regression outcome ~ cohort + age + sex: " + fits,
                "penalised likelihood-ratio test (as logistf)", "profile penalised likelihood (as logistf)")
    return ("Logistic regression outcome ~ cohort + age + sex by maximum likelihood: " + fits
            + "; a pair whose estimate does not exist (zero cell) or whose fit does not converge is flagged",
            "Wald", "Wald")


def association_methods(cfg: AssociationConfig) -> pd.DataFrame:
    """One row per statement; the report renders them in order."""
    est, p, ci = _estimator(cfg)
    family = ("each half of the patients, every modality and outcome pooled" if cfg.fdr_family == "split"
              else "each (half, modality, outcome)")
    corr = "Holm" if cfg.replication_method == "holm" else "Benjamini-Hochberg"
    rows = [
        ("crude", "2x2 counts; OR with Woolf 95% CI (+0.5 to every cell of a table with a zero cell); "
                  "two-sided Fisher exact p"),
        ("adjusted estimate", est),
        ("adjusted p", p),
        ("adjusted 95% CI", ci),
        ("multiple testing", f"Benjamini-Hochberg q (Fisher p and score-test p) and Bonferroni within {family}"),
        ("rank", f"per modality and outcome in the discovery half: {_may_rank(cfg)} with an adjusted estimate, "
                 f"ordered by {_KEYS[cfg.rank_key]}"),
        ("replication", f"the validation half's adjusted log-OR has the discovery sign and its p, {corr}-"
                        f"corrected over the pairs ranked for the same modality and outcome, is below "
                        f"{cfg.replication_p:g}"),
    ]
    return pd.DataFrame(rows, columns=COLUMNS)
