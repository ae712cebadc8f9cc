"""cxr-edge: screen pediatric chest X-rays for pneumonia on small computers.

The package is the edge runtime (no TensorFlow); ``train/`` and ``convert/`` in a checkout
make the models it runs.
"""

__version__ = "0.7.0"
