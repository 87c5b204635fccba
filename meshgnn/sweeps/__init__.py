"""Tools around hyperparameter sweeps (`python train.py -m hparams_search=optuna`)."""
