"""Training logs: CSV files in the run folder (``train.csv`` per logged step, ``valid.csv``
per epoch) and, when tensorboard is installed, the same values as TensorBoard scalars."""

from __future__ import annotations

import csv
from pathlib import Path


class MetricsLogger:
    """Appends rows to ``<outdir>/<name>.csv`` and mirrors their numbers to TensorBoard."""

    def __init__(self, outdir: str | Path):
        self.outdir = Path(outdir)
        self._tensorboard = None
        self._tensorboard_tried = False

    def log(self, name: str, row: dict) -> None:
        """Append ``row`` to ``name`` (e.g. "train.csv"); a new file gets a header."""
        path = self.outdir / name
        new = not path.exists()
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        board = self._board()
        if board is not None:
            step = row.get("step", 0)
            for key, value in row.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    board.add_scalar(f"{name.split('.')[0]}/{key}", value, step)
            board.flush()

    def _board(self):
        if not self._tensorboard_tried:
            self._tensorboard_tried = True
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return None
            self._tensorboard = SummaryWriter(str(self.outdir / "tb"))
        return self._tensorboard
