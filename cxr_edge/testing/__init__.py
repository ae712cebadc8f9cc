"""Synthetic radiograph-like films for tests, ``sample_data/synthetic/make_samples.py`` and CI: never patients."""
