"""Synthetic radiograph-like films for tests, ``sample_data/make_samples.py`` and CI: never patients."""
