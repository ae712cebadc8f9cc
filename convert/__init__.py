"""Keras -> TFLite conversion: quantized variants, model bundles and a parity report.

``python -m convert RUN_DIR --out DIR --name NAME`` turns a training run's model into
float32, float16, dynamic-range and full-integer int8 bundles that ``cxr-edge`` loads,
then checks every variant against the Keras model through the edge tool's own code.
This package imports TensorFlow; ``cxr_edge`` never imports it.
"""
