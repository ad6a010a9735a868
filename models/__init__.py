"""Pure computation of the pipeline, one subpackage per stage, in pipeline order:

- `encoders/`  study -> embedding (CT volumes, report text), behind one interface
- `sae/`       embeddings -> dictionary of concepts (sparse autoencoders: module, training
               step, CPU kernels, metrics, checkpoints, sweep, data sources, encoding)
- `cohorts.py` activations -> per-feature statistics and top-percentile cohorts
- `outcomes/`  MEDS events -> outcome labels per study; who is analysed (split by patient)
- `stats/`     cohorts x outcomes -> associations (screen, score test, exact and Firth
               logistic fits, OR per SD, ranking, multiple testing) and survival
- `interpret/` cohorts + reports -> a named, held-out-scored label per feature
- `demo/`      the synthetic cohort with planted truth, and the self-check against it
- `devices.py` device and dtype resolution shared by every torch component

Nothing here imports Prefect or does artifact I/O: `tasks/` wraps these functions.
Subpackages may import `data_contracts` and earlier stages, never later ones.
"""
