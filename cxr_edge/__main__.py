"""``python -m cxr_edge``: the same as the ``cxr-edge`` command."""

from cxr_edge.cli import main

main(prog_name="cxr-edge")
