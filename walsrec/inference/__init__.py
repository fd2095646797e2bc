"""Inference with a trained model: top-k selection (`topk`), batch recommendations written as
CSV or Parquet (`recommend`) and the item metadata table that filters them (`item_table`)."""
