"""Tools for a reviewer with labelled films: metrics, evaluation, plots, and adapting a bundle to a site.

They read labelled folders and serve a person checking the model, not the device's per-film path, so
the edge core (everything in :mod:`cxr_edge` outside this package and the CLI) never imports them
(``tests/test_layering.py``).
"""
