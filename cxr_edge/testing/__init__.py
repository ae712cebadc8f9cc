"""Synthetic radiograph-like films for tests, ``tests/assets/drawings/make_samples.py`` and CI: never patients."""
