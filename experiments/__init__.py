"""Experiments: scripts that answered one question each; see README.md. Not part of the product."""
