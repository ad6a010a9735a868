"""The tables behind the report's figures, as one typed bundle: `models/figures` builds it,
the report task stores each table in the report artifact under its contract, `reports/`
draws from it. A missing table (None) means the figure is left out, not an error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields

import pandas as pd

from data_contracts.schemas import (
    ACTIVATION_HISTOGRAMS,
    FDR_CUTS,
    FOREST,
    MANHATTAN,
    REPORT_PAGES,
    THUMBNAILS,
    Contract,
)

CONTRACTS: dict[str, Contract] = {
    "pages": REPORT_PAGES,
    "histograms": ACTIVATION_HISTOGRAMS,
    "manhattan": MANHATTAN,
    "fdr_cuts": FDR_CUTS,
    "forest": FOREST,
    "thumbnails": THUMBNAILS,
}


@dataclass(frozen=True)
class ReportTables:
    pages: pd.DataFrame | None = None  # REPORT_PAGES: which features get a page, in priority order
    histograms: pd.DataFrame | None = None  # ACTIVATION_HISTOGRAMS of the page features
    manhattan: pd.DataFrame | None = None  # MANHATTAN points and bands (index plots)
    fdr_cuts: pd.DataFrame | None = None  # FDR_CUTS per modality and outcome
    forest: pd.DataFrame | None = None  # FOREST rows of the page features
    thumbnails: pd.DataFrame | None = None  # THUMBNAILS of the image page features

    def items(self) -> Iterator[tuple[str, pd.DataFrame, Contract]]:
        """(name, table, contract) of every table present."""
        for f in fields(self):
            table = getattr(self, f.name)
            if table is not None:
                yield f.name, table, CONTRACTS[f.name]
