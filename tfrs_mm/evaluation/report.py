"""A Markdown evaluation report with PNG plots: loss curves, Recall@K by K, ablation bars.

Plots use matplotlib's object API with the Agg canvas (no pyplot, no global
backend switch), so reports can be written from tests and worker processes.
Every part is optional: missing or empty inputs just leave their section out.
"""

from __future__ import annotations

import os
import re

import numpy as np

ABLATION_METRICS = ("recall@10", "ndcg@10")


def _figure():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is in requirements/base.txt
        raise ImportError("write_report needs matplotlib: pip install 'matplotlib>=3.8'") from err
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig, out_dir: str, name: str) -> str:
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, name))
    return name


def _plot_history(history: dict, out_dir: str) -> str | None:
    curves = {k: v for k, v in history.items() if isinstance(v, list | tuple | np.ndarray) and len(v)}
    if not curves:
        return None
    fig, ax = _figure()
    for name, values in curves.items():
        ax.plot(np.arange(1, len(values) + 1), np.asarray(values, dtype=float), marker="o", label=name)
    ax.set(xlabel="epoch", ylabel="value", title="Training history")
    ax.legend()
    return _save(fig, out_dir, "loss_curves.png")


def _recall_by_k(metrics: dict) -> tuple[list[int], list[float]]:
    pairs = sorted(
        (int(m.group(1)), float(v))
        for key, v in metrics.items()
        if (m := re.fullmatch(r"recall@(\d+)", key)) and isinstance(v, int | float)
    )
    return [k for k, _ in pairs], [v for _, v in pairs]


def _plot_recall(metrics: dict, out_dir: str) -> str | None:
    ks, values = _recall_by_k(metrics)
    if not ks:
        return None
    fig, ax = _figure()
    ax.plot(ks, values, marker="o")
    scale = "log" if ks[-1] / ks[0] >= 10 else "linear"  # default ks span 5..100
    ax.set(xlabel="K", ylabel="Recall@K", title="Recall@K", xscale=scale)
    ax.set_xticks(ks, [str(k) for k in ks])
    return _save(fig, out_dir, "recall_at_k.png")


def _plot_ablation(ablation: dict, out_dir: str) -> str | None:
    names = [n for n, m in ablation.items() if isinstance(m, dict)]
    if not names:
        return None
    fig, ax = _figure()
    width = 0.8 / len(ABLATION_METRICS)
    x = np.arange(len(names))
    for i, metric in enumerate(ABLATION_METRICS):
        values = [float(ablation[n].get(metric) or 0.0) for n in names]
        ax.bar(x + i * width, values, width, label=metric)
    ax.set_xticks(x + width * (len(ABLATION_METRICS) - 1) / 2, names, rotation=20)
    ax.set(ylabel="value", title="Ablation")
    ax.legend()
    return _save(fig, out_dir, "ablation.png")


def _flatten(metrics: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def _format(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _metrics_table(metrics: dict) -> list[str]:
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {key} | {_format(value)} |" for key, value in _flatten(metrics).items()]
    return lines


def _ablation_table(ablation: dict) -> list[str]:
    names = [n for n, m in ablation.items() if isinstance(m, dict)]
    lines = ["| variant | " + " | ".join(ABLATION_METRICS) + " |", "|---" * (len(ABLATION_METRICS) + 1) + "|"]
    for name in names:
        cells = " | ".join(_format(ablation[name].get(m)) for m in ABLATION_METRICS)
        lines.append(f"| {name} | {cells} |")
    return lines


def write_report(
    metrics: dict | None,
    history: dict | None = None,
    ablation: dict | None = None,
    out_dir: str = ".",
    title: str = "Evaluation report",
) -> str:
    """Writes `report.md` and its PNG plots into `out_dir`.

    Args:
      metrics: result of `RankingAccumulator.result()` (nested dicts are
        flattened with "/" in the table), or None.
      history: per-epoch curves, e.g. `{"loss": [...], "val_loss": [...]}`
        (a Keras `History.history`), plotted as `loss_curves.png`.
      ablation: variant name → metrics dict; `recall@10` and `ndcg@10` are
        drawn as grouped bars in `ablation.png`.
      out_dir: created if missing.
      title: Markdown H1.

    Returns:
      Path of the written `report.md`.
    """
    os.makedirs(out_dir, exist_ok=True)
    metrics, history, ablation = metrics or {}, history or {}, ablation or {}
    lines = [f"# {title}", ""]
    if metrics:
        lines += ["## Metrics", "", *_metrics_table(metrics), ""]
        if png := _plot_recall(metrics, out_dir):
            lines += ["## Recall@K", "", f"![Recall@K]({png})", ""]
    if history and (png := _plot_history(history, out_dir)):
        lines += ["## Training history", "", f"![Training history]({png})", ""]
    if ablation and (png := _plot_ablation(ablation, out_dir)):
        lines += ["## Ablation", "", *_ablation_table(ablation), "", f"![Ablation]({png})", ""]
    if len(lines) == 2:
        lines += ["No metrics, history or ablation were given.", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path
