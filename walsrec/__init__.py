"""walsrec: the framework-free core of the recommender.

Data loading and validation, splits, the WALS solver in TensorFlow, top-k and metrics. Nothing
here imports ZenML or BentoML: steps, pipelines and the service are thin adapters over it.
"""

__version__ = "0.1.0"
