"""Reporting an index: a text summary for the CLI and the recall/latency trade-off plot."""

from __future__ import annotations

from tfrs_mm.indexing.build import IndexResult
from tfrs_mm.indexing.tuner import Latency, TunedIndex


def _latency(latency: Latency) -> str:
    return (
        f"single query p50 {latency.single_p50_ms:.3f} ms, p99 {latency.single_p99_ms:.3f} ms; "
        f"batched {latency.batched_queries_per_second:,.0f} queries/s (batch {latency.batch_size})"
    )


def format_index_summary(result: IndexResult) -> str:
    """What `tfrs-mm index` prints: the setting, recall@k against exact search, latency, the version."""
    tuned, info = result.tuned, result.info
    params = tuned.params
    if params.exact:
        setting = "exact (brute force): the catalog is below index.exact_below"
    else:
        setting = (
            f"ScaNN: num_leaves {params.num_leaves}, num_leaves_to_search {params.num_leaves_to_search}, "
            f"reorder_k {params.reorder_k}, anisotropic hashing ({params.dimensions_per_block} dims/block, "
            f"threshold {params.anisotropic_quantization_threshold})"
        )
    met = "met" if tuned.target_met else "NOT met: raise index.reorder_k or index.exact_below"
    lines = [
        f"index version {result.version}: {result.path}",
        f"  items: {info['n']} × {info['dim']} ({info['new_items']} new since training, "
        f"{info['content_only_items']} content-only, {info['removed_items']} removed)",
        f"  setting: {setting}",
        f"  recall@{params.k} vs exact: {tuned.recall:.4f} (target {tuned.recall_target}, {met}) "
        f"over {tuned.num_queries} queries",
        f"  latency: {_latency(tuned.latency)}",
    ]
    if not params.exact:
        lines.append(f"  exact search: {_latency(tuned.exact_latency)}")
        lines.append(f"  tuning: {len(tuned.curve)} settings measured (plot_tradeoff draws them)")
    return "\n".join(lines)


def plot_tradeoff(result: IndexResult | TunedIndex, path: str) -> str:
    """Saves the tuning trade-off as a PNG; returns `path`.

    Left: recall@k against `num_leaves_to_search`. Right: recall@k against
    single-query p50 latency, each sweep point labelled with its leaves. The
    built index, exact search (recall 1) and the target are marked. Uses
    matplotlib's Agg canvas (no pyplot), so it works in tests, workers and notebooks.
    """
    from matplotlib.ticker import ScalarFormatter

    tuned = result.tuned if isinstance(result, IndexResult) else result
    fig, (by_leaves, by_latency) = _figure()
    leaves = [p.num_leaves_to_search for p in tuned.curve]
    recalls = [p.recall for p in tuned.curve]
    latencies = [p.latency.single_p50_ms for p in tuned.curve]
    chosen = "exact" if tuned.params.exact else f"built index ({tuned.params.num_leaves_to_search} leaves)"
    if tuned.curve:
        by_leaves.plot(leaves, recalls, marker="o", label="sweep")
        by_leaves.set_xscale("log", base=2)
        by_leaves.xaxis.set_major_formatter(ScalarFormatter())
        by_latency.scatter(latencies, recalls, label="sweep")
        for n, x, y in zip(leaves, latencies, recalls):
            by_latency.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10))
    star = {"marker": "*", "s": 200, "color": "C3"}
    if not tuned.params.exact:
        by_leaves.scatter([tuned.params.num_leaves_to_search], [tuned.recall], **star)
    by_latency.scatter([tuned.exact_latency.single_p50_ms], [1.0], marker="s", color="black", label="exact")
    by_latency.scatter([tuned.latency.single_p50_ms], [tuned.recall], label=chosen, **star)
    ylabel = f"recall@{tuned.params.k} vs exact"
    for ax in (by_leaves, by_latency):
        ax.axhline(tuned.recall_target, color="gray", linestyle="--", label=f"target {tuned.recall_target}")
    by_leaves.set(xlabel="num_leaves_to_search", ylabel=ylabel, title="Recall by leaves searched")
    by_latency.set(xlabel="single-query latency p50 (ms)", ylabel=ylabel, title="Recall / latency")
    by_latency.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _figure():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:  # pragma: no cover - matplotlib is in requirements/base.txt
        raise ImportError("plot_tradeoff needs matplotlib: pip install 'matplotlib>=3.8'") from err
    fig = Figure(figsize=(11, 4), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, 2)
