"""SavedModel exports: TF Serving layout, named signatures, outputs equal to the in-memory models,
loadable by plain TensorFlow, warmup records, models.config, atomic versions."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfrs_mm import config as config_lib
from tfrs_mm import schema
from tfrs_mm.export import export_all, layout, scann_index, warmup
from tfrs_mm.export.modules import ExactTopK
from tfrs_mm.indexing import IndexParams, choose_params, exact_top_k, recall_at_k, tune_index, write_version
from tfrs_mm.models import build_retrieval_model, random_item_table
from tfrs_mm.models.ranking import build_ranking_model
from tfrs_mm.training.ranking import build_ranker, save_ranker
from tfrs_mm.training.warm_start import FINAL_CHECKPOINT, build_towers, save_towers

DIMS = {"text": 6, "image": 4}
ITEMS = [f"item_{i:02d}" for i in range(40)]
USERS = [f"u{i}" for i in range(6)]
H = 3
SIZES = {"embedding_dim": 8, "id_embedding_dim": 4, "ranker_dim": 8, "ranker_heads": 2, "ranker_mlp": (8,)}
MODEL = config_lib.ModelConfig(
    modalities=("text", "image"), modality_dropout=0.0, popularity_prior=True, **SIZES
)
COUNTS = np.array([(i * 7) % 11 for i in range(len(ITEMS))], np.float64)  # train counts, some 0
PRIOR_WEIGHT = 0.08
EXPORT = config_lib.ExportConfig(retrieval_k=12, final_k=5, warmup_requests=3)
INDEX = config_lib.IndexConfig(k=12, exact_below=20, tune_queries=20)  # 40 items: a tuned ScaNN index
CONFIG = dataclasses.replace(
    config_lib.Config(), model=MODEL, export=EXPORT, data=config_lib.DataConfig(history_length=H), index=INDEX
)
SIGNATURES = {
    "retrieval": ({"user_id", "history"}, {"item_ids", "scores"}),
    "retrieval_scann": ({"user_id", "history"}, {"item_ids", "scores"}),
    "ranking": ({"user_id", "history", "candidate_ids"}, {"scores", "history_attention", "modality_weights"}),
    "recommender": ({"user_id", "history"}, {"item_ids", "scores", "history_attention", "modality_weights"}),
}
QUERY_USERS = tf.constant(["u0", "u1", "stranger", "u3"])
HISTORIES = [
    ["", "item_01", "item_02"],
    ["", "", ""],
    ["item_03", "item_03", "nope"],
    ["item_05", "item_06", "x"],
]
QUERY_HISTORY = tf.constant(HISTORIES)


def _write_dataset(root: Path) -> Path:
    """A dataset dir with a manifest and a `valid` split of real-looking interaction records."""
    specs = schema.interaction_features(H)
    manifest = schema.Manifest(
        item_features=schema.item_features(DIMS),
        interaction_features=specs,
        files={"valid": "valid-*.tfrecord.gz"},
        split=schema.SplitRecord("random", counts={"valid": 8}),
    )
    schema.write_manifest(manifest, str(root))
    rows = [
        ("u2", "item_09", ["", "item_04", "item_08"]),
        ("u2", "item_10", ["item_04", "item_08", "item_09"]),
    ]
    rows += [(f"u{i}", f"item_{20 + i}", ["", "", f"item_{10 + i}"]) for i in (0, 1, 4, 5, 3, 1)]
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(str(root / "valid-00000-of-00001.tfrecord.gz"), options) as writer:
        for user, item, history in rows:
            values = {"user_id": user, "item_id": item, "history": np.array(history, dtype=object)}
            writer.write(
                schema.encode_example(specs, {**values, "timestamp": 0, "rating": 0.0, "weight": 1.0})
            )
    return root


def _write_workdir(workdir: Path):
    table = random_item_table(len(ITEMS), DIMS, missing_rate=0.2, seed=7, item_ids=ITEMS)
    retrieval = build_retrieval_model(table, ITEMS[:30], USERS[:4], MODEL, item_frequencies=COUNTS)
    build_towers(retrieval)
    retrieval.popularity_prior.prior_weight.assign(PRIOR_WEIGHT)  # as if chosen on valid
    config_lib.save_config(CONFIG, str(workdir))
    retrieval.save_weights(str(workdir / FINAL_CHECKPOINT))
    save_towers(retrieval, str(workdir))
    ranking = build_ranking_model(table, ITEMS[:30], USERS[:4], MODEL)
    build_ranker(ranking.ranker)
    out = workdir / "ranking"
    config_lib.save_config(CONFIG, str(out))
    save_ranker(ranking.ranker, str(out))
    ranking.save_weights(str(out / FINAL_CHECKPOINT))
    return retrieval, ranking.ranker


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = _write_dataset(root / "data")
    retrieval, ranker = _write_workdir(root / "work")
    summary = export_all(str(data), str(root / "work"), str(root / "saved_models"))
    return root, summary, retrieval, ranker


def _load(summary, name):
    return tf.saved_model.load(summary["models"][name]["path"]).signatures["serving_default"]


def _exact_top_k(retrieval, users, history, k):
    """(ids [B, k], scores [B, k]) by numpy: query · item vectors + the popularity prior, history at -inf."""
    vectors = retrieval.item_tower(tf.constant(ITEMS), training=False).numpy()
    scores = retrieval.query_tower(users, history, training=False).numpy() @ vectors.T
    scores += PRIOR_WEIGHT * np.log1p(COUNTS)[None, :]
    for b, row in enumerate(history.numpy()):
        for item in row:
            if item.decode() in ITEMS:
                scores[b, ITEMS.index(item.decode())] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.array(ITEMS, dtype=object)[order], np.take_along_axis(scores, order, axis=1)


def test_every_export_is_a_versioned_saved_model_with_assets_and_warmup(exported):
    _, summary, _, _ = exported
    assert set(summary["models"]) == {"retrieval", "retrieval_scann", "ranking", "recommender"}
    assert summary["skipped"] == {}
    for name, entry in summary["models"].items():
        path = Path(entry["path"])
        assert path.name == "1" and entry["version"] == 1 and path.parent.name == name
        assert (path / "saved_model.pb").exists() and (path / "variables" / "variables.index").exists()
        for asset in ("config.yaml", "manifest.json", "README.md"):
            assert (path / "assets" / asset).exists(), (name, asset)
        assert (path / "assets.extra" / "tf_serving_warmup_requests").exists()
        assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp-")]
        assert entry["core_ops_only"] == (name != "retrieval_scann"), entry["custom_ops"]
        inputs, outputs = SIGNATURES[name]
        assert set(entry["signatures"]["serving_default"]["inputs"]) == inputs
        assert set(entry["signatures"]["serving_default"]["outputs"]) == outputs
    scann = summary["models"]["retrieval_scann"]
    assert any(op.startswith("Scann>") for op in scann["custom_ops"])
    assert "ScaNN custom ops" in Path(scann["path"], "assets", "README.md").read_text()
    assert summary["models"]["retrieval"]["k"] == 12 and summary["models"]["recommender"]["k"] == 5
    tokens = Path(summary["models"]["ranking"]["path"], "assets", "token_names.txt").read_text().split()
    assert tokens == ["id", "text", "image"]
    saved = config_lib.load_config(str(Path(summary["models"]["retrieval"]["path"], "assets", "config.yaml")))
    assert saved.export == EXPORT


def test_retrieval_is_exact_top_k_without_history_items(exported):
    _, summary, retrieval, _ = exported
    out = _load(summary, "retrieval")(user_id=QUERY_USERS, history=QUERY_HISTORY)
    ids, scores = _exact_top_k(retrieval, QUERY_USERS, QUERY_HISTORY, 12)
    np.testing.assert_array_equal(out["item_ids"].numpy().astype(str), ids.astype(str))
    np.testing.assert_allclose(out["scores"].numpy(), scores, atol=1e-5)
    for row, history in zip(out["item_ids"].numpy(), QUERY_HISTORY.numpy()):
        assert not set(row) & set(history)


def test_ranking_matches_the_ranker(exported):
    _, summary, _, ranker = exported
    candidates = tf.constant(
        [["item_04", "item_05"], ["item_06", "item_39"], ["item_07", "nope"], ["a", "b"]]
    )
    out = _load(summary, "ranking")(user_id=QUERY_USERS, history=QUERY_HISTORY, candidate_ids=candidates)
    expected = ranker(QUERY_USERS, QUERY_HISTORY, candidates, training=False)
    assert out["modality_weights"].shape == (4, 2, 3) and out["history_attention"].shape == (4, 2, H)
    for key in ("scores", "history_attention", "modality_weights"):
        np.testing.assert_allclose(out[key].numpy(), expected[key].numpy(), atol=1e-5)


def test_recommender_reranks_the_retrieved_items(exported):
    _, summary, retrieval, ranker = exported
    out = _load(summary, "recommender")(user_id=QUERY_USERS, history=QUERY_HISTORY)
    candidates, _ = _exact_top_k(retrieval, QUERY_USERS, QUERY_HISTORY, 12)
    ranked = ranker(QUERY_USERS, QUERY_HISTORY, tf.constant(candidates.astype(str)), training=False)
    order = np.argsort(-ranked["scores"].numpy(), axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(
        out["item_ids"].numpy().astype(str), np.take_along_axis(candidates, order, 1).astype(str)
    )
    for key in ("scores", "history_attention", "modality_weights"):
        expected = np.take_along_axis(
            ranked[key].numpy(), order.reshape(order.shape + (1,) * (ranked[key].ndim - 2)), 1
        )
        np.testing.assert_allclose(out[key].numpy(), expected, atol=1e-5)
    assert np.all(np.diff(out["scores"].numpy(), axis=1) <= 0)


PLAIN_TF = """
import json, sys
import tensorflow as tf
requests = json.loads(sys.argv[1])
answers = {}
for name, (path, inputs) in requests.items():
    signature = tf.saved_model.load(path).signatures["serving_default"]
    out = signature(**{k: tf.constant(v) for k, v in inputs.items()})
    answers[name] = {k: v.numpy().tolist() if v.dtype != tf.string else v.numpy().astype(str).tolist()
                     for k, v in out.items()}
extra = ("tfrs_mm", "scann", "tensorflow_text", "tensorflow_recommenders")
extra = sorted(m for m in extra if m in sys.modules)
print(json.dumps({"answers": answers, "extra_modules": extra}))
"""


def test_core_exports_run_in_a_process_that_imports_only_tensorflow(exported):
    _, summary, _, _ = exported
    query = {"user_id": ["u0", "u2"], "history": [["", "item_01", "item_02"], ["", "", "item_09"]]}
    requests = {name: (summary["models"][name]["path"], query) for name in ("retrieval", "recommender")}
    requests["ranking"] = (
        summary["models"]["ranking"]["path"],
        {**query, "candidate_ids": [["item_03"]] * 2},
    )
    run = subprocess.run(
        [sys.executable, "-c", PLAIN_TF, json.dumps(requests)], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["extra_modules"] == []
    here = _load(summary, "retrieval")(**{k: tf.constant(v) for k, v in query.items()})
    assert result["answers"]["retrieval"]["item_ids"] == here["item_ids"].numpy().astype(str).tolist()
    assert np.array(result["answers"]["recommender"]["modality_weights"]).shape == (2, 5, 3)
    assert np.array(result["answers"]["ranking"]["history_attention"]).shape == (2, 1, H)


def test_saved_model_cli_shows_the_documented_names(exported):
    _, summary, _, _ = exported
    cli = str(Path(sys.executable).parent / "saved_model_cli")
    show = [cli, "show", "--tag_set", "serve", "--signature_def", "serving_default", "--dir"]
    runs = {
        n: subprocess.Popen([*show, e["path"]], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for n, e in summary["models"].items()
    }
    for name, (inputs, outputs) in SIGNATURES.items():
        shown = runs[name].communicate(timeout=300)[0]
        assert runs[name].returncode == 0
        assert set(re.findall(r"inputs\['(\w+)'\]", shown)) == inputs, shown
        assert set(re.findall(r"outputs\['(\w+)'\]", shown)) == outputs, shown
        assert "input_1" not in shown and "output_0" not in shown


def test_scann_export_recalls_the_exact_results(exported):
    pytest.importorskip("scann")  # registers the Scann ops the export needs

    _, summary, _, _ = exported
    entry = summary["models"]["retrieval_scann"]
    # No index dir: tuned here as `tfrs-mm index` tunes (no train split: item vectors as queries).
    assert entry["index"]["index_dir"] is None and entry["index"]["target_met"]
    assert entry["index"]["tuning_queries"]["source"].startswith("item vectors")
    tuned = entry["index"]["num_leaves_to_search"]
    assert entry["scann_params"] == {
        "exact": False, "k": 12 + H, "num_leaves": 6, "num_leaves_to_search": tuned, "reorder_k": 40,
        "dimensions_per_block": 2, "anisotropic_quantization_threshold": 0.2,
    }  # fmt: skip
    exact = _load(summary, "retrieval")(user_id=QUERY_USERS, history=QUERY_HISTORY)
    approx = _load(summary, "retrieval_scann")(user_id=QUERY_USERS, history=QUERY_HISTORY)
    assert approx["item_ids"].shape == (4, 12)
    recall = np.mean(
        [len(set(a) & set(e)) / 12 for a, e in zip(approx["item_ids"].numpy(), exact["item_ids"].numpy())]
    )
    # 4 user queries x 12 ids over 40 items; the index was tuned on item-vector queries and ScaNN
    # retrains its partitions at random on every build, so single runs spread (0.81-1.0 seen);
    # a random ranking would recall 12/40 = 0.3.
    assert recall >= 0.75, recall
    for row, history in zip(approx["item_ids"].numpy(), QUERY_HISTORY.numpy()):
        assert not set(row) & (set(history) - {b""})


# The warmup protos' schema (tensorflow_serving/apis model.proto, predict.proto, prediction_log.proto,
# only the fields we write), for protobuf to decode the records with; in our own package name.
SERVING_PROTO = """
name: "tfrs_mm_test_serving.proto"  package: "tfrs_mm_test"  syntax: "proto3"
dependency: "tensorflow/core/framework/tensor.proto"
message_type { name: "ModelSpec"
  field { name: "name" number: 1 type: TYPE_STRING }
  field { name: "signature_name" number: 3 type: TYPE_STRING } }
message_type { name: "PredictRequest"
  field { name: "model_spec" number: 1 type: TYPE_MESSAGE type_name: ".tfrs_mm_test.ModelSpec" }
  field { name: "inputs" number: 2 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".tfrs_mm_test.PredictRequest.InputsEntry" }
  nested_type { name: "InputsEntry" options { map_entry: true }
    field { name: "key" number: 1 type: TYPE_STRING }
    field { name: "value" number: 2 type: TYPE_MESSAGE type_name: ".tensorflow.TensorProto" } } }
message_type { name: "PredictLog"
  field { name: "request" number: 1 type: TYPE_MESSAGE type_name: ".tfrs_mm_test.PredictRequest" } }
message_type { name: "PredictionLog"
  field { name: "predict_log" number: 6 type: TYPE_MESSAGE type_name: ".tfrs_mm_test.PredictLog" } }
"""


def _serving_prediction_log_class():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
    from tensorflow.core.framework import tensor_pb2  # noqa: F401  (puts tensor.proto in the default pool)

    pool = descriptor_pool.Default()
    pool.AddSerializedFile(
        text_format.Parse(SERVING_PROTO, descriptor_pb2.FileDescriptorProto()).SerializeToString()
    )
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tfrs_mm_test.PredictionLog"))


PREDICTION_LOG = _serving_prediction_log_class()


def decode_prediction_log(record: bytes) -> dict:
    """{model, signature, inputs: {name: ndarray}} of a serialised PredictionLog."""
    from tensorflow.core.framework import tensor_pb2

    request = PREDICTION_LOG.FromString(record).predict_log.request
    inputs = {
        key: tf.make_ndarray(tensor_pb2.TensorProto.FromString(value.SerializeToString()))
        for key, value in request.inputs.items()
    }
    return {
        "model": request.model_spec.name,
        "signature": request.model_spec.signature_name,
        "inputs": inputs,
    }


def test_warmup_records_are_prediction_logs_of_real_users(exported):
    _, summary, _, _ = exported
    for name, entry in summary["models"].items():
        path = Path(entry["path"], "assets.extra", "tf_serving_warmup_requests")
        logs = [decode_prediction_log(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]
        assert len(logs) == entry["warmup_requests"] == 3
        assert {(log["model"], log["signature"]) for log in logs} == {(name, "serving_default")}
        users = [log["inputs"]["user_id"].astype(str).tolist() for log in logs]
        assert users == [["u2"], ["u0"], ["u1"]]  # the first distinct users of the valid split
        np.testing.assert_array_equal(logs[0]["inputs"]["history"].astype(str), [["", "item_04", "item_08"]])
        assert set(logs[0]["inputs"]) == SIGNATURES[name][0]
        if name == "ranking":
            assert logs[0]["inputs"]["candidate_ids"].shape == (1, 12)


def _parse_text_proto(text: str) -> dict:
    """A tiny text-format parser: `name { ... }` blocks and `key: value` scalars, as dicts of lists."""
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|[{}:]|[\w./-]+', text)
    stack, i = [{}], 0
    while i < len(tokens):
        if tokens[i] == "}":
            stack.pop()
            i += 1
            continue
        key, i = tokens[i], i + 1
        i += tokens[i] == ":"
        if tokens[i] == "{":
            stack[-1].setdefault(key, []).append({})
            stack.append(stack[-1][key][-1])
        else:
            stack[-1].setdefault(key, []).append(json.loads(tokens[i]) if tokens[i][0] == '"' else tokens[i])
        i += 1
    return stack[0]


def test_models_config_lists_the_stock_servable_exports(exported):
    root, summary, _, _ = exported
    assert Path(summary["models_config"]) == root / "saved_models" / "models.config"
    parsed = _parse_text_proto(Path(summary["models_config"]).read_text())
    configs = parsed["model_config_list"][0]["config"]
    assert [c["name"] for c in configs] == [["retrieval"], ["ranking"], ["recommender"]]
    for c in configs:
        assert c["model_platform"] == ["tensorflow"]
        assert Path(c["base_path"][0]).is_absolute()
        assert c["base_path"][0] == str(root / "saved_models" / c["name"][0])
    every = _parse_text_proto(Path(summary["models_config_custom_ops"]).read_text())
    assert ["retrieval_scann"] in [c["name"] for c in every["model_config_list"][0]["config"]]


def test_a_second_export_takes_the_next_version_and_uses_the_index_dir(exported, tmp_path):
    root, _, retrieval, _ = exported
    work = tmp_path / "work"
    shutil.copytree(root / "work", work, ignore=shutil.ignore_patterns("ranking"))
    index = tmp_path / "index"
    index.mkdir()
    (index / "item_ids.txt").write_text("\n".join(ITEMS) + "\n")
    np.save(index / "vectors.npy", retrieval.encode_catalog(ITEMS))
    (index / "index.json").write_text(json.dumps({"exact": True, "recall": 1.0}))
    out = root / "saved_models"
    summary = export_all(str(root / "data"), str(work), str(out), index_dir=str(index))
    assert {n: e["version"] for n, e in summary["models"].items()} == {"retrieval": 2, "retrieval_scann": 2}
    assert layout.versions(str(out / "ranking")) == [1]
    assert "tfrs-mm train ranking" in summary["skipped"]["ranking"] and "recommender" in summary["skipped"]
    assert summary["models"]["retrieval_scann"]["scann_params"]["exact"] is True
    pytest.importorskip("scann")
    exact = _load(summary, "retrieval")(user_id=QUERY_USERS, history=QUERY_HISTORY)["item_ids"].numpy()
    approx = _load(summary, "retrieval_scann")(user_id=QUERY_USERS, history=QUERY_HISTORY)["item_ids"].numpy()
    np.testing.assert_array_equal(approx, exact)
    configs = _parse_text_proto(Path(summary["models_config"]).read_text())["model_config_list"][0]["config"]
    assert [c["name"] for c in configs] == [["retrieval"]]


def test_a_failed_write_leaves_no_version_directory(tmp_path):
    base = tmp_path / "retrieval"
    (base / "3").mkdir(parents=True)

    def write(tmp):
        Path(tmp).mkdir()
        (Path(tmp) / "saved_model.pb").write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        layout.write_version(str(base), write)
    assert sorted(p.name for p in base.iterdir()) == ["3"]
    version, path = layout.write_version(str(base), lambda tmp: Path(tmp).mkdir())
    assert version == 4 and Path(path) == base / "4"


def test_a_failing_export_leaves_nothing_behind(exported, tmp_path, monkeypatch):
    root, _, _, _ = exported

    def broken(*args, **kwargs):
        raise OSError("warmup could not be written")

    monkeypatch.setattr(warmup, "write_warmup", broken)
    with pytest.raises(OSError, match="warmup"):
        export_all(str(root / "data"), str(root / "work"), str(tmp_path / "out"))
    assert list((tmp_path / "out" / "retrieval").iterdir()) == []
    assert not (tmp_path / "out" / "models.config").exists()


def test_serving_params_keep_the_tuned_index_and_only_raise_the_reordering():
    tuned = IndexParams(False, 10, 55, num_leaves_to_search=7, reorder_k=40, dimensions_per_block=2)
    tuned = dataclasses.replace(tuned, anisotropic_quantization_threshold=0.2)
    assert scann_index.serving_params(tuned, 3_000, 13) == dataclasses.replace(tuned, k=13)
    raised = scann_index.serving_params(tuned, 3_000, 60)  # k + H above the tuned reorder_k
    assert raised == dataclasses.replace(tuned, k=60, reorder_k=60)
    assert scann_index.serving_params(tuned, 50, 60) == dataclasses.replace(
        tuned, k=50, num_leaves=50, reorder_k=50
    )
    assert scann_index.serving_params(tuned, 15, 6) == IndexParams(exact=True, k=6)  # too few to hash
    assert scann_index.serving_params(IndexParams(exact=True, k=None), 40, 15) == IndexParams(True, 15)
    with pytest.raises(ValueError, match="num_leaves_to_search"):
        scann_index.serving_params(dataclasses.replace(tuned, num_leaves_to_search=None), 3_000, 13)


def test_top_k_on_a_catalog_smaller_than_k_plus_history_pads_with_empty_ids():
    pytest.importorskip("scann")
    items = ["a", "b", "c", "d"]
    vectors = np.eye(4, dtype=np.float32)
    query, history = tf.constant([[4.0, 3.0, 2.0, 1.0]]), tf.constant([["b", ""]])
    scann_top_k, params = scann_index.scann_top_k(items, vectors, IndexParams(exact=True, k=6), 6, 2)
    assert params == IndexParams(exact=True, k=4) and scann_top_k.k == 4
    for top_k in (ExactTopK(items, vectors, k=6), scann_top_k):
        ids, scores = top_k(query, history)
        assert ids.numpy().astype(str).tolist() == [["a", "c", "d", ""]]
        np.testing.assert_allclose(scores.numpy(), [[4.0, 2.0, 1.0, -np.inf]])


def test_without_an_index_dir_small_catalogs_are_exact_and_untuned():
    def no_queries():
        raise AssertionError("exact search has nothing to tune")

    vectors = np.eye(20, dtype=np.float32)
    params, info = scann_index.tuned_params(vectors, config_lib.IndexConfig(k=5), no_queries)
    assert params == IndexParams(exact=True, k=5) and info == {"index_dir": None, "exact": True, "n": 20}
    few = config_lib.IndexConfig(k=5, exact_below=0)  # ScaNN by config, but too few items to hash
    assert scann_index.tuned_params(vectors[:15], few, no_queries)[0] == IndexParams(exact=True, k=5)


class _VectorRetrieval(tf.Module):
    """`retrieval_scann` minus the query tower: [B, D] query vectors in, the export's top-k out."""

    def __init__(self, top_k, dim: int):
        super().__init__()
        self.top_k = top_k
        self.serve = tf.function(
            lambda query, history: dict(zip(("item_ids", "scores"), self.top_k(query, history))),
            input_signature=[tf.TensorSpec([None, dim], tf.float32), tf.TensorSpec([None, None], tf.string)],
        )


def test_a_scann_export_from_an_index_dir_serves_the_index_stages_tuned_index(tmp_path):
    pytest.importorskip("scann")
    from scann.proto import scann_pb2

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(60, 16))

    def clustered(n):  # noise near the spread: neighbours straddle clusters and one leaf is not enough
        x = centers[rng.integers(0, len(centers), n)] + 0.7 * rng.normal(size=(n, 16))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    vectors, queries = clustered(3_000), clustered(300)
    params = choose_params(len(vectors), config_lib.IndexConfig(k=10, exact_below=1_000))
    tuned = tune_index(vectors, params, queries, recall_target=0.95)
    assert not tuned.params.exact and 1 < tuned.params.num_leaves_to_search < tuned.params.num_leaves
    ids = [f"item_{i}" for i in range(len(vectors))]
    _, index_dir = write_version(
        str(tmp_path), ids, vectors, tuned.params.to_dict() | {"recall": tuned.recall}
    )
    read_ids, read_vectors, read_params, _ = scann_index.read_index_dir(index_dir)
    assert read_params == tuned.params
    top_k, served = scann_index.scann_top_k(read_ids, read_vectors, read_params, k=10, history_length=H)
    assert served == dataclasses.replace(tuned.params, k=10 + H)  # the tuned reorder_k already covers k + H
    options = tf.saved_model.SaveOptions(namespace_whitelist=list(scann_index.NAMESPACE_WHITELIST))
    tf.saved_model.save(_VectorRetrieval(top_k, 16), str(tmp_path / "saved"), options=options)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))

    config = scann_pb2.ScannConfig.FromString(loaded.top_k.index._serialized_searcher.scann_config.numpy()[0])
    assert config.hash.asymmetric_hash.noise_shaping_threshold == pytest.approx(0.2)  # anisotropic
    assert config.partitioning.num_children == tuned.params.num_leaves
    assert config.partitioning.query_spilling.max_spill_centers == tuned.params.num_leaves_to_search
    assert config.exact_reordering.approx_num_neighbors == tuned.params.reorder_k
    out = loaded.serve(tf.constant(queries), tf.fill([len(queries), H], ""))
    rows = np.array([[int(i.split("_")[1]) for i in row] for row in out["item_ids"].numpy().astype(str)])
    recall = recall_at_k(rows, exact_top_k(queries, vectors, 10))
    # A rebuild retrains the partitions: the same index up to k-means noise (usually within ~0.01 of the
    # tuned recall, but one CI run measured 0.927 against 0.969), and k + H = 13 <= reorder_k leaves its
    # candidates as tuned. The tuned parameters themselves are checked exactly above.
    assert recall == pytest.approx(tuned.recall, abs=0.06)
