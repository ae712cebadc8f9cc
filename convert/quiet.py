"""TensorFlow without the noise: conversion's own messages must stay readable.

TensorFlow logs from C++ straight to file descriptor 2 and ``model.export`` prints to
stdout, so Python-level redirection is not enough: :func:`captured_output` points the
process's descriptors 1 and 2 at a temporary file for the duration of a noisy call and
hands the text back only when the call fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

from convert.errors import ConvertError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class NoisyFailure(ConvertError):
    """A silenced call failed; the message carries the tail of what it printed."""


def import_tensorflow() -> Any:
    """TensorFlow with its Python and absl loggers turned down to errors."""
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    with captured_output("importing TensorFlow"):  # oneDNN and absl notices ignore the log level
        import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    return tf


@contextlib.contextmanager
def captured_output(what: str = "TensorFlow", log_path: Path | None = None, tail_lines: int = 15) -> Iterator[None]:
    """Silence fds 1 and 2 inside the block, appending what was printed to ``log_path`` if given;
    on an exception, raise :class:`NoisyFailure` with the tail of that output."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        failure: Exception | None = None
        # Python-level prints too: sys.stdout need not write to fd 1 (pytest, notebooks).
        to_log = open(log.fileno(), "w", encoding="utf-8", closefd=False)
        try:
            with contextlib.redirect_stdout(to_log), contextlib.redirect_stderr(to_log):
                yield
        except Exception as exc:
            failure = exc
        finally:
            to_log.close()
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
        log.seek(0)
        text = log.read().decode("utf-8", "replace")
    if log_path is not None:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {what}\n{text}")
    if failure is not None:
        tail = text.strip().splitlines()[-tail_lines:]
        raise NoisyFailure(f"{what} failed: {failure}" + "".join(f"\n  | {line}" for line in tail)) from failure
