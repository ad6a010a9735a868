"""Tables behind the report's figures: which features get a page, activation histograms,
Manhattan / volcano points with FDR cut-offs, forest-plot rows, CT thumbnails.

Why here and not in `reports/`: every number a chart shows is computed once, in a plain
function with a fixed-column result that the report artifact also stores, so a figure can
be checked against its table; `reports/` only draws what it is given."""
