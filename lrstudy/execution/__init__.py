"""Execution: a trial's MLflow life, a scenario's notebook run, the study runner,
its executors and kernels, the notebooks' parameter contract, the report's run.
"""
