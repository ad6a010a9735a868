"""Outcomes and the analysed population: outcome labels per study from MEDS events (index
date, prior cases, incident window, follow-up, age and sex), the discovery/validation split
by patient, and which studies each modality encoded.

May import numpy, pandas and `data_contracts`.
"""
