"""sitecustomize for the emulated check's ``armhf-k64`` run: a 32-bit Python that sees a 64-bit kernel.

32-bit Raspberry Pi OS on a Pi 4/5 boots a 64-bit kernel, whose ``uname`` says ``aarch64``
to 32-bit programs too; qemu-arm always says ``armv7l``. pip computes the environment
markers (``platform.machine()``) and its wheel tags (``sysconfig.get_platform()``) from
``os.uname()``, so patching it here reproduces what pip sees on such a Pi.
"""

import os

_uname = os.uname


def _uname_of_a_64_bit_kernel() -> os.uname_result:
    real = _uname()
    return os.uname_result((real.sysname, real.nodename, real.release, real.version, "aarch64"))


os.uname = _uname_of_a_64_bit_kernel
