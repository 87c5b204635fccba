"""Using trained models: packages, prediction on mesh files, evaluation, ensembles, faster
inference, and the notebook API (`api.load`, also `meshgnn.load`)."""
