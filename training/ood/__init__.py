"""The out-of-distribution check (is this upload a frontal chest film?), fitted on real films.

`run` is `python -m training ood` and the export's OOD step; `data` scores uploads through the serving
chain; `fit` fits the statistics and thresholds that `app.model.ood` serves; `negatives` makes the
non-chest uploads; `design` is the feature-layer comparison and `report` the Markdown (training/OOD.md).
"""
