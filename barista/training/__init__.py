"""Training: spatially masked pretraining, finetuning, reconstruction and baselines."""
