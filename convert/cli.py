"""``python -m convert``: placeholder until the command lands (next commit)."""


def main() -> None:
    raise SystemExit("python -m convert: the command line is not finished yet; use convert.pipeline")
