"""The trainers library: the trainers, their data loading, models and loops, in plain Python and PyTorch.

Nothing here imports Django or Celery (tests/training/test_core_isolation.py checks it), so a trainer runs
the same inside a Celery job and as a plain script (`python -m trainers.cli`).
"""
