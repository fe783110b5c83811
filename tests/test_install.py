"""The project as a user installs it: a wheel (not editable) in a fresh environment, trained
through its console script in a folder with no checkout in sight."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".venv", ".git", "outputs", "multirun", "__pycache__", "*.egg-info",
                              ".pytest_cache", ".ruff_cache", "build", "docs")


@pytest.mark.slow
def test_a_wheel_installed_outside_the_checkout_trains(tmp_path):
    source = tmp_path / "source"  # a copy: building in place would leave build/ in the checkout
    shutil.copytree(ROOT, source, ignore=SKIP, symlinks=True)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # The dependencies come from this environment's site-packages; its own tinygpt (an editable
    # install's path file) is not read from there, so only the wheel can answer `import tinygpt`.
    (site / "dependencies.pth").write_text(
        "\n".join(p for p in sys.path if p.endswith("site-packages")) + "\n")
    py = venv / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", str(source)], check=True, cwd=tmp_path)
    shutil.rmtree(source)  # nothing may be read from the source tree after the install
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([py, "-c", "import tinygpt; print(tinygpt.__file__)"],
                           capture_output=True, text=True, cwd=elsewhere, check=True)
    assert Path(where.stdout.strip()).is_relative_to(site)
    p = subprocess.run([venv / "bin" / "tinygpt-train", "experiment=smoke",
                        f"data.cache_dir={tmp_path / 'cache'}"],
                       capture_output=True, text=True, cwd=elsewhere, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "trained 40 steps" in p.stdout
    assert list((elsewhere / "outputs").rglob("last.ckpt"))
