"""Naming features from reports: negation-aware term extraction, label terms by the
log-odds ratio with an informative Dirichlet prior, and the keyword interpreter that labels
each feature from its top reports and scores the label on held-out ones.

May import numpy, scipy, pandas and `data_contracts`.
"""
