"""What an export says about itself: its signature as data, and the README shipped in its assets."""

from __future__ import annotations

from typing import Any

STOCK_SERVING_NOTE = "core TensorFlow ops only: stock TF Serving (tensorflow_model_server) serves it"
DESCRIPTIONS = {
    "retrieval": "exact top-k retrieval: the query tower scores every catalog item; history items excluded",
    "retrieval_scann": "approximate top-k retrieval from a TFRS ScaNN index; history items excluded",
    "ranking": "the cross-attention ranker: scores candidates and explains each score",
    "recommender": "retrieval then ranking in one graph: the retrieved items reordered by the ranker",
}
OUTPUT_NOTES = {
    "item_ids": 'item ids, best first; "" where no item is left (catalog smaller than k + history)',
    "scores": "float32 scores, descending for retrieval and recommender (-inf for an empty slot)",
    "history_attention": "per returned item, attention over the history positions (sums to 1 or is 0)",
    "modality_weights": "per returned item, weights over the tokens in token_names.txt (sum to 1)",
}


def _dims(shape) -> list[int | None]:
    return [None if d is None else int(d) for d in shape]


def _shape(dims: list[int | None]) -> str:
    """`[B, ?, 10]`: B for the batch, ? for other free dimensions."""
    names = ["B" if i == 0 and d is None else "?" if d is None else str(d) for i, d in enumerate(dims)]
    return "[" + ", ".join(names) + "]"


def describe_signature(function) -> dict[str, dict[str, dict[str, Any]]]:
    """`{"inputs": {name: {dtype, shape}}, "outputs": {...}}` of a tf.function with an input signature."""
    concrete = function.get_concrete_function()
    args, kwargs = concrete.structured_input_signature
    specs = [*args, *kwargs.values()]
    return {
        "inputs": {s.name: {"dtype": s.dtype.name, "shape": _dims(s.shape)} for s in specs},
        "outputs": {
            name: {"dtype": t.dtype.name, "shape": _dims(t.shape)}
            for name, t in sorted(concrete.structured_outputs.items())
        },
    }


def readme_text(name: str, signatures: dict, *, k: int | None, note: str, workdir: str, data_dir: str) -> str:
    """The README.md shipped in an export's `assets/`."""
    lines = [f"# {name}", "", DESCRIPTIONS.get(name, name) + ".", ""]
    lines += ["**Serving:** " + (note or STOCK_SERVING_NOTE) + ".", ""]
    if k is not None:
        lines += [f"Returns k = {k} items per query.", ""]
    for key, signature in signatures.items():
        lines += [f"## Signature `{key}`", "", "| | name | dtype | shape | |", "|---|---|---|---|---|"]
        for kind in ("inputs", "outputs"):
            for tensor, spec in signature[kind].items():
                note = OUTPUT_NOTES.get(tensor, "")
                row = [kind[:-1], f"`{tensor}`", spec["dtype"], _shape(spec["shape"]), note]
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += [
        'History rows are item ids, most recent last, left-padded with "".',
        "",
        f"Trained in `{workdir}` on `{data_dir}`; `config.yaml` is the resolved config and",
        "`manifest.json` the dataset manifest (encoders, vocabularies, split).",
        "",
    ]
    return "\n".join(lines)
