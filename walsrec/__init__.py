"""walsrec: the framework-free core of the recommender.

Data loading and validation, splits, the WALS solver in TensorFlow, top-k and metrics. Nothing
here imports ZenML or BentoML: steps, pipelines and the service are thin adapters over it.

Layout: `data/` (reading, validating, splitting), `models/` (WALS, Bayesian averaging,
item-item, popularity, blends, `RecommenderModel`, fold-in), `evaluation/` (metrics, reports),
`inference/` (top-k, batch recommendations, item tables), `tuning/` (Optuna search),
`training.py` (train + evaluate), `native/` (C++ kernels). The old flat module paths still
import, as the same modules (`walsrec._moved`).
"""

from walsrec import _moved

__version__ = "0.1.0"

_moved.install()
