"""``python -m train`` without the ``train`` extra: one line saying what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WITHOUT_TRAINING_PACKAGES = (
    "import runpy, sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('tensorflow', 'keras', 'pandas', 'sklearn'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = ['python -m train', *sys.argv[1:]]\n"
    "runpy.run_module('train', run_name='__main__', alter_sys=True)\n"
)


def test_train_fit_without_the_train_extra_prints_an_install_hint_not_a_traceback(tmp_path):
    data = tmp_path / "data"
    for label in ("NORMAL", "PNEUMONIA"):
        (data / "train" / label).mkdir(parents=True)
    result = subprocess.run([sys.executable, "-c", WITHOUT_TRAINING_PACKAGES, "fit", "--data", str(data),
                             "--out", str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("install the training dependencies: "
                                                           "pip install -e '.[edge,train]'")
