"""The demo's last steps: index, export, and explained recommendations served over TF Serving's REST API.

    index_dir = build_index_step("[8/10]", data_dir, workdir)
    summary = export_step("[9/10]", data_dir, workdir, "out/saved_models", index_dir)
    serve_and_query_step("[10/10]", summary, users, titles)

The server is the local TF-Serving-compatible one (`running_server`, a free
port), given the `models.config` written for stock `tensorflow_model_server`,
and every answer comes over HTTP through `ServingClient`, exactly as it would
from production TF Serving. `served_explanations` turns the recommender
export's outputs back into `tfrs_mm.explain.Recommendation`s, so served lists
print like in-process ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tfrs_mm import explain
from tfrs_mm.serving.client import Recommendation as ServedRecommendation
from tfrs_mm.serving.client import ServingClient

SHOWN = 5  # recommendations printed per user
RECOMMENDER = "recommender"
NOT_SEEN_NOTE = "the export excludes the history it is sent; in-process lists also masked train/valid items"


def build_index_step(label: str, data_dir: str, workdir: str) -> str:
    """`tfrs-mm index`: embeds and indexes the catalog under `workdir/index/<v>/`; returns that directory."""
    from tfrs_mm.indexing import build_index, format_index_summary

    print(f"{label} index --data {data_dir} --workdir {workdir}")
    result = build_index(data_dir, workdir)
    print(indent(format_index_summary(result)))
    return result.path


def export_step(label: str, data_dir: str, workdir: str, out_dir: str, index_dir: str) -> dict:
    """`tfrs-mm export`: every SavedModel in TF Serving's layout plus the two configs; returns the summary."""
    from tfrs_mm.export import export_all

    print(f"{label} export --data {data_dir} --workdir {workdir} --out {out_dir}")
    summary = export_all(data_dir, workdir, out_dir, index_dir=index_dir)
    print(indent(format_export_summary(summary)))
    return summary


def format_export_summary(summary: Mapping) -> str:
    """One line per exported model (version, path, whether stock TF Serving can run it), then the configs."""
    lines = []
    for name, model in summary["models"].items():
        ops = "core ops" if model["core_ops_only"] else "needs " + ", ".join(model["custom_ops"])
        lines.append(f"{name:<16} version {model['version']:<3} {model['path']}  ({ops})")
    lines += [f"{name:<16} skipped: {reason}" for name, reason in summary.get("skipped", {}).items()]
    lines.append(f"models.config        {summary['models_config']}  (stock TF Serving: core-ops exports)")
    if summary.get("models_config_custom_ops"):
        lines.append(f"models_scann.config  {summary['models_config_custom_ops']}  (needs the ScaNN ops)")
    return "\n".join(lines)


def serve_and_query_step(
    label: str,
    summary: Mapping,
    users: Sequence[explain.UserContext],
    titles: Mapping[str, str],
    k: int = SHOWN,
) -> None:
    """Serves `models.config` locally, prints each model's status and signature, then each user's
    top-`k` from the recommender export with its explanations, and stops the server."""
    from tfrs_mm.serving import running_server
    from tfrs_mm.serving.model_config import read_model_config

    config_file = summary["models_config"]
    tokens = summary["models"][RECOMMENDER]["token_names"]
    names = [model.name for model in read_model_config(config_file)]
    with running_server(config_file, poll_seconds=0) as url, ServingClient(url) as client:
        print(f"{label} serve --model_config_file {config_file}  (local TF Serving REST API on {url})")
        for name in names:
            print(indent(model_line(client, name)))
        print(indent(NOT_SEEN_NOTE))
        for user in users:
            recs = client.recommend(user.user_id, list(user.history), k=k, model=RECOMMENDER)
            print(
                f"      user {user.user_id} ({len(user.history)} items in history): "
                f"served by {RECOMMENDER} over POST /v1/models/{RECOMMENDER}:predict"
            )
            explained = served_explanations(recs, user.history, tokens)
            print(indent(explain.format_recommendations(explained, titles), 8))
    print("      server stopped")


def model_line(client: ServingClient, name: str) -> str:
    """`name  version v STATE  inputs -> outputs` from the server's status and metadata endpoints."""
    (latest, *_) = client.status(name)["model_version_status"]  # newest version first
    signature = client.metadata(name)["metadata"]["signature_def"]["signature_def"]["serving_default"]
    inputs, outputs = ", ".join(sorted(signature["inputs"])), ", ".join(sorted(signature["outputs"]))
    return f"{name:<12} version {latest['version']} {latest['state']:<9}  {inputs} -> {outputs}"


def served_explanations(
    recs: Sequence[ServedRecommendation], history: Sequence[str], token_names: Sequence[str]
) -> list[explain.Recommendation]:
    """The recommender export's answers as `explain.Recommendation`s, for `format_recommendations`.

    Args:
        recs: From `ServingClient.recommend` on a `recommender` export.
        history: The history sent with the request, oldest first, without padding.
        token_names: The export's modality token order (`assets/token_names.txt`, or
            `export_all`'s summary `["models"]["recommender"]["token_names"]`).

    Returns:
        One per served item, in served order. `retrieval_rank` is 0: the export does not
        return retrieval's order.
    """
    explained = []
    for rec in recs:
        # [H] weights over the history as sent; padding the server might add would come first.
        weights = rec.history_attention[-len(history) :] if history else ()
        attention: dict[str, float] = {}
        for item, weight in zip(history, weights):
            attention[item] = attention.get(item, 0.0) + float(weight)
        ranked = sorted(attention.items(), key=lambda kv: -kv[1])
        explained.append(
            explain.Recommendation(
                item_id=rec.item_id,
                score=rec.score,
                retrieval_rank=0,
                attention=attention,
                top_history=tuple((item, weight) for item, weight in ranked[:3] if weight > 0),
                modality_weights={t: float(w) for t, w in zip(token_names, rec.modality_weights)},
            )
        )
    return explained


def indent(text: str, width: int = 6) -> str:
    """`text` with every line indented by `width` spaces (the demo's output layout)."""
    return " " * width + text.replace("\n", "\n" + " " * width)
