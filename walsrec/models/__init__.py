"""The models: WALS (`wals`, TensorFlow, with its config in `wals_config`), Bayesian posterior
averaging (`bayes`), item-item neighbourhoods and EASE (`itemknn`), popularity (`popularity`),
blends (`ensemble`), the one model class by id (`recommender.RecommenderModel`) and the NumPy
fold-in of new users (`fold_in`).

The package imports none of them: `walsrec.models.wals` (and with it TensorFlow) is imported
when training starts.
"""
