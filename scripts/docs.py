"""`make docs`: every figure and result the documentation shows, from the current code.

The README's configuration table (from txmon/settings.py), docs/detection.md's results
block and docs/detection/*.png (`txmon evaluate`), the README's picture of a reference
day (the worker's own minutes and alerts for transactions_1, drawn by `txmon report`'s
renderer) and the executed notebooks. A
document that quotes a detector is only true of the detector that produced it, so they
are made together, by one command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from txmon.settings import TrainSettings, default

ROOT = Path(__file__).resolve().parent.parent
TXMON = str(Path(sys.executable).with_name("txmon"))
EVALUATE = ["evaluate", "--out", "docs/detection", "--report", "docs/detection.md",
            "--no-progress"]
README_DAY = "transactions_1.csv"
README_FIGURE = ROOT / "docs" / "report-transactions_1.png"
#: As `txmon evaluate` trains (and `txmon train --simulate-days 2`).
TRAIN_DAYS, TRAIN_RATE = 2, default(TrainSettings, "rate")


def step(name: str):
    print(f"docs: {name} ...", flush=True)
    return time.perf_counter()


def readme_figure(data_dir: Path) -> None:
    from evaluation.evaluate import run_windows, train_model
    from evaluation.train import windows_from_files
    from exporter.report import render

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model.joblib"
        train_model(TRAIN_DAYS, TRAIN_RATE).save(model)
        run = run_windows(model, windows_from_files([str(data_dir / README_DAY)]))
    drawn = render(run.windows, run.alerts, README_FIGURE,
                   title=f"{README_DAY} through the worker's code: incidents shaded")
    print(f"  {README_FIGURE.relative_to(ROOT)}: {drawn['incidents']} incidents, "
          f"{drawn['alerts']} alert records")


def execute_notebooks(data_dir: Path) -> None:
    """In place, with a kernel on this very interpreter (as tests/integration/test_notebooks.py)."""
    import os

    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory() as root:
        spec = Path(root) / "kernels" / "txmon-docs"
        spec.mkdir(parents=True)
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "txmon venv", "language": "python"}))
        os.environ.update(JUPYTER_PATH=root, TXMON_DATA_DIR=str(data_dir),
                          MPLBACKEND="module://matplotlib_inline.backend_inline")
        for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
            t = time.perf_counter()
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, kernel_name="txmon-docs", timeout=300,
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)",
                                         "language": "python", "name": "python3"}
            nbformat.write(nb, path)
            print(f"  {path.relative_to(ROOT)} in {time.perf_counter() - t:.0f} s")


def main() -> int:
    from txmon.settings import main as settings_main
    from txmon.settings import shared_data_dir

    data_dir = shared_data_dir()
    step("README configuration table (python -m txmon.settings --update README.md)")
    settings_main(["--update", str(ROOT / "README.md")])
    t = step("detection results (" + " ".join(["txmon", *EVALUATE]) + ")")
    subprocess.run([TXMON, *EVALUATE], cwd=ROOT, check=True)
    print(f"  in {time.perf_counter() - t:.0f} s")
    step("README figure")
    readme_figure(data_dir)
    step("notebooks")
    execute_notebooks(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
