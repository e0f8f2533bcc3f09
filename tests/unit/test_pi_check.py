"""scripts/pi-check imports picamera2's path under the venv's numpy and says how to fix a mismatch.

A stand-in ``picamera2`` package on ``PYTHONPATH`` plays Raspberry Pi OS's: one that imports numpy as the
real one does, and one that fails as an extension built for numpy 1.x fails under numpy 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ABI_ERROR = (
    "raise ImportError('numpy.core.multiarray failed to import "
    "(A module that was compiled using NumPy 1.x cannot be run in NumPy 2)')\n"
)


def _pi_check(tmp_path: Path, init: str) -> subprocess.CompletedProcess[str]:
    pkg = tmp_path / "site" / "picamera2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(init, encoding="utf-8")
    (pkg / "encoders.py").write_text("import numpy\n", encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "pi-check"), "--camera", "picamera2", "--mic", "none"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_numpy_mismatch_is_named_with_its_fix(tmp_path: Path) -> None:
    done = _pi_check(tmp_path, ABI_ERROR)
    assert done.returncode == 1
    import numpy

    assert f"picamera2: numpy {numpy.__version__} from" in done.stdout
    assert "picamera2: FAIL - import picamera2: numpy.core.multiarray failed to import" in done.stdout
    assert "pip install 'numpy<2'" in done.stdout


def test_a_picamera2_that_imports_under_this_numpy_passes_the_import_check(tmp_path: Path) -> None:
    done = _pi_check(tmp_path, "import numpy\n")
    assert "picamera2: import picamera2 OK" in done.stdout
    assert "picamera2: import picamera2.encoders OK" in done.stdout
    assert "numpy<2" not in done.stdout
