"""The synthetic demo cohort with planted truth: patients, MEDS events and studies
(`cohort`), CT volumes (`volumes`), report text and the truth document (`reports`), and
the self-check that compares a finished run with what was planted (`check`).

May import numpy, pandas, pyarrow, nibabel and `data_contracts`.
"""
