"""Training for cxr-edge models (Keras 3 / TensorFlow): ``python -m train --help``.

Data is read through :mod:`cxr_edge.preprocess`, the same contract the edge tool uses,
so a trained model never sees pixels prepared differently from the deployed ones.
"""
