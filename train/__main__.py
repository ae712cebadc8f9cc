"""``python -m train``; without the ``train`` extra it says what to install in one line, not a traceback."""

import sys

#: Top-level modules of the ``train`` extra (pyproject.toml), which a plain edge install lacks.
TRAIN_EXTRA = ("tensorflow", "keras", "pandas", "sklearn", "matplotlib", "pydicom")
INSTALL_HINT = "pip install -e '.[edge,train]'"


def run() -> None:
    try:
        from train.cli import main

        main()
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in TRAIN_EXTRA:
            raise  # not a missing training dependency: a real bug, keep its traceback
        sys.exit(f"python -m train: {exc.name} is not installed; install the training dependencies: {INSTALL_HINT}")


run()
