"""Feature x outcome statistics: the crude screen (2x2, Fisher, Woolf CI), the adjusted
score test, batched exact and fast logistic fits, OR per SD of activation, ranking and
multiple testing, the association driver, and survival confirmation (Cox, Kaplan-Meier).
Results are fixed-column frames.

May import numpy, scipy, pandas, lifelines, `data_contracts` and `models.outcomes`.
"""
