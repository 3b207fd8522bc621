"""Training metrics of a run: RUN/metrics.jsonl (one JSON object per logged step: step, total
and each loss, lr, wd, momentum, images/s) and RUN/loss_curve.png redrawn at each checkpoint."""

from __future__ import annotations

import json
from pathlib import Path


class MetricsLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (written after the checkpoint a resumed run restarts from)."""
        kept = [r for r in self.read() if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def plot(self, png: Path, loss_names: tuple[str, ...]) -> Path:
        from matplotlib.figure import Figure  # Agg canvas, no pyplot state, no display needed

        records = self.read()
        fig = Figure(figsize=(11, 4))
        ax, ax_lr = fig.subplots(1, 2)
        steps = [r["step"] for r in records]
        for name in ("total", *loss_names):
            if records and name in records[-1]:
                ax.plot([r["step"] for r in records if name in r], [r[name] for r in records if name in r],
                        label=name, lw=2.0 if name == "total" else 1.0)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.legend(fontsize=8)
        ax_lr.plot(steps, [r["lr"] for r in records])
        ax_lr.set_xlabel("step")
        ax_lr.set_ylabel("learning rate")
        fig.tight_layout()
        fig.savefig(png, dpi=90)
        return Path(png)
