"""Experiment loggers behind one small interface (`base.Logger`), chosen by the `logger`
config group: TensorBoard (the default), CSV, MLflow and Weights & Biases, one or several.

`fanout.open_loggers` builds the chosen backends for one launch and `fanout.Loggers` sends
every scalar, image and final result to each of them, and closes each with the launch's
status. metrics.jsonl is not a backend: the run's own record (resume, diagnose, plot) is
written whatever loggers are chosen (meshgnn/training/metrics_log.py).
"""
