"""Retrieval quality and speed benchmarks on the offline datasets (issue #4).

Sub-benchmarks (select with `--only a,b,...`; default: all, in this order):

  tutorial   ml-100k, TFRS basic-retrieval tutorial protocol: 80k/20k shuffled (user, movie)
             pairs, FactorizedTopK top-K categorical accuracy (no masking). Baseline: the
             tutorial's ID-only model; ours: the multimodal two-tower (posters + plot text).
  ml1m       ml-1m, RecBole protocol (ratings >= 3, random 8:1:1 per user, full ranking with
             train/valid items masked): Recall@10 / NDCG@10 of ours vs an ID-only two-tower,
             against the published LightGCN figures.
  cold       ml-1m cold-item split (20% of items held out): cold-item Recall@20 of ours vs
             a train-popularity ranking.
  lastfm     Last.fm-2K (our random split, not its mmrec split): text+audio vs ID-only
             Recall@20 / NDCG@20.
  throughput training examples/s: multimodal vs the tutorial ID-only model on the same pairs,
             and MirroredStrategy on 2 logical CPU devices vs one device (fresh subprocesses).

Writes bench/results/retrieval.json and bench/results/retrieval.md (results of sub-benchmarks
not run this time are kept from the previous JSON). Data are prepared (raw + preprocessed)
under --cache (default /tmp/tfrs_mm_bench) and reused.

    .venv/bin/python bench/bench_retrieval.py --only tutorial,ml1m
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

import _results  # noqa: E402  (bench/, the script's own directory)

import tfrs_mm  # noqa: E402,F401  (selects tf-keras before anything touches tf.keras)

DATA_ROOT = os.environ.get("TFRS_MM_DATA", "/work/shared/data")
logger = logging.getLogger("bench_retrieval")

# name -> (raw dataset, preset, overrides)
DATASETS = {
    # Evaluation queries carry up to 200 of the user's train and valid items (training samples 50): the
    # ranker's item-to-item evidence reads the whole query history (ml-100k at 50: NDCG@10 +4.5 %).
    "ml100k": ("movielens-100k", "movielens", ["data.rating_threshold=null", "data.history_length=200"]),
    "ml1m": ("movielens-1m", "movielens", ["data.split=random", "data.history_length=200"]),
    "ml1m-cold": ("movielens-1m", "movielens", ["data.split=cold-item", "data.cold_item_fraction=0.2"]),
    "lastfm": ("lastfm-2k", "lastfm", ["data.split=random"]),
}


def load_config(preset: str, overrides: list[str]):
    from tfrs_mm.config import load_config as load

    return load(preset=preset, overrides=overrides)


def prepare(name: str, cache: str) -> str:
    """Raw + preprocessed dataset dir for `name` under `cache` (reused when present)."""
    from tfrs_mm.data.loaders import load_dataset

    raw_name, preset, overrides = DATASETS[name]
    raw_dir = os.path.join(cache, "raw", raw_name)
    out_dir = os.path.join(cache, "data", name)
    if os.path.exists(os.path.join(out_dir, "manifest.json")):
        if _history_length(out_dir) == load_config(preset, overrides).data.history_length:
            return out_dir
        logger.info("%s was preprocessed with another history length: preprocessing again", out_dir)
        import shutil

        shutil.rmtree(out_dir)
    if not os.path.exists(os.path.join(raw_dir, "dataset.json")):
        load_dataset(raw_name, DATA_ROOT, raw_dir)
    from beam_jobs.preprocess import preprocess

    start = time.perf_counter()
    result = preprocess(raw_dir, out_dir, load_config(preset, overrides), beam_args=["--runner=DirectRunner"])
    logger.info("preprocessed %s in %.0fs: %s", name, time.perf_counter() - start, result.summary())
    return out_dir


def _history_length(data_dir: str) -> int:
    from tfrs_mm import schema

    spec = next(s for s in schema.read_manifest(data_dir).interaction_features if s.name == "history")
    return spec.shape[0]


# ---------------------------------------------------------------------------- tutorial (ml-100k)

TUTORIAL_KS = (1, 5, 10, 50, 100)
TUTORIAL_PUBLISHED_TOP100 = 0.233  # the figure for the TFRS basic-retrieval tutorial


def tutorial_split(seed: int = 42):
    """(user, item, ts) arrays of the tutorial's 80k train / 20k test pairs.

    Pairs come from u.data in file order (the tutorial reads TFDS `movielens/100k-ratings`, whose
    order differs, so the exact split differs; the protocol is the same). Items are ids, not titles
    (ML-100K has a few duplicate titles that the tutorial merges).
    """
    import tensorflow as tf

    rows = np.loadtxt(os.path.join(DATA_ROOT, "ml-100k", "u.data"), dtype=np.int64)
    users, items, ts = rows[:, 0].astype(str), rows[:, 1].astype(str), rows[:, 3]
    tf.random.set_seed(seed)
    ratings = tf.data.Dataset.from_tensor_slices({"u": users, "i": items, "t": ts})
    shuffled = ratings.shuffle(100_000, seed=seed, reshuffle_each_iteration=False)
    batch = next(iter(shuffled.batch(100_000)))
    u = np.array([x.decode() for x in batch["u"].numpy()])
    i = np.array([x.decode() for x in batch["i"].numpy()])
    t = batch["t"].numpy()
    return (u[:80_000], i[:80_000], t[:80_000]), (u[80_000:100_000], i[80_000:100_000], t[80_000:100_000])


def tutorial_baseline(train, test, catalog: list[str], epochs: int = 3):
    """The TFRS basic-retrieval tutorial model, trained as in the tutorial; returns metrics + timing."""
    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    from tfrs_mm.evaluation import factorized_top_k_accuracy

    tf.random.set_seed(42)
    unique_users = np.unique(np.concatenate([train[0], test[0]]))
    unique_items = np.array(catalog)

    class MovielensModel(tfrs.Model):
        def __init__(self):
            super().__init__()
            self.user_model = tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=unique_users, mask_token=None),
                    tf.keras.layers.Embedding(len(unique_users) + 1, 32),
                ]
            )
            self.movie_model = tf.keras.Sequential(
                [
                    tf.keras.layers.StringLookup(vocabulary=unique_items, mask_token=None),
                    tf.keras.layers.Embedding(len(unique_items) + 1, 32),
                ]
            )
            candidates = tf.data.Dataset.from_tensor_slices(unique_items).batch(128).map(self.movie_model)
            self.task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(candidates=candidates))

        def compute_loss(self, features, training=False):
            return self.task(self.user_model(features["user_id"]), self.movie_model(features["item_id"]))

    model = MovielensModel()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    train_ds = tf.data.Dataset.from_tensor_slices({"user_id": train[0], "item_id": train[1]})
    test_ds = tf.data.Dataset.from_tensor_slices({"user_id": test[0], "item_id": test[1]})
    cached_train = train_ds.shuffle(100_000).batch(8192).cache()
    cached_test = test_ds.batch(4096).cache()
    start = time.perf_counter()
    model.fit(cached_train, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start  # includes the (tutorial's) train-time FactorizedTopK metric
    keras_eval = model.evaluate(cached_test, return_dict=True, verbose=0)
    user_vectors = model.user_model(tf.constant(test[0])).numpy()
    item_vectors = model.movie_model(tf.constant(unique_items)).numpy()
    row = {x: n for n, x in enumerate(unique_items)}
    ours = factorized_top_k_accuracy(
        user_vectors @ item_vectors.T, np.array([row[x] for x in test[1]]), TUTORIAL_KS
    )
    return {
        "factorized_top_k": ours,
        "keras_evaluate": {k: float(v) for k, v in keras_eval.items()},
        "train_seconds": round(seconds, 2),
        "examples_per_second": round(len(train[0]) * epochs / seconds, 1),
        "epochs": epochs,
    }


def pair_histories(users, items, ts, length: int, queries=None):
    """Per train pair, the user's train items strictly earlier in time (most recent last), left-padded.

    With `queries` (a list of user ids), one history per query instead: the user's last `length`
    train items overall.
    """
    from collections import defaultdict

    from tfrs_mm.schema.features import PADDING_ID

    by_user = defaultdict(list)
    for n in np.lexsort((items, ts)):
        by_user[users[n]].append((ts[n], items[n]))

    def pad(seq):
        seq = list(seq)[-length:] if length else []
        return [PADDING_ID] * (length - len(seq)) + seq

    if queries is not None:
        return np.array([pad(i for _, i in by_user.get(u, [])) for u in queries], dtype=object)
    out = []
    for u, t in zip(users, ts):
        out.append(pad(i for tt, i in by_user[u] if tt < t))
    return np.array(out, dtype=object)


def tutorial_multimodal(train, test, data_dir: str, epochs: int, history_length: int, batch_size: int):
    """Our two-tower over the ml-100k item table (posters + plot text), trained on the same pairs."""
    import tensorflow as tf

    from tfrs_mm import schema
    from tfrs_mm.evaluation import factorized_top_k_accuracy
    from tfrs_mm.models import build_retrieval_model
    from tfrs_mm.training.retrieval import load_retrieval_data

    config = load_config("movielens", [f"train.epochs={epochs}", f"train.batch_size={batch_size}"])
    manifest = schema.read_manifest(data_dir)
    modalities = tuple(m for m in config.model.modalities if m in manifest.embedding_dims)
    data = load_retrieval_data(data_dir, manifest, modalities)
    catalog = list(data.table.item_ids)
    row = {x: n for n, x in enumerate(catalog)}
    counts = np.zeros(len(catalog))
    for i in train[1]:
        counts[row[i]] += 1
    train_items = sorted(set(train[1]))
    train_users = sorted(set(train[0]))
    tf.random.set_seed(42)
    model = build_retrieval_model(data.table, train_items, train_users, config.model, counts)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.train.learning_rate))
    hist = pair_histories(*train, history_length)
    ds = (
        tf.data.Dataset.from_tensor_slices(
            {"user_id": train[0], "item_id": train[1], "history": hist.astype(str)}
        )
        .shuffle(100_000, seed=42)
        .batch(batch_size)
        .cache()
    )
    start = time.perf_counter()
    model.fit(ds, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    queries = sorted(set(test[0]))
    qh = pair_histories(*train, history_length, queries=queries).astype(str)
    qv = np.concatenate(
        [
            model.query_tower(tf.constant(queries[s : s + 512]), tf.constant(qh[s : s + 512])).numpy()
            for s in range(0, len(queries), 512)
        ]
    )
    qrow = {u: n for n, u in enumerate(queries)}
    iv = model.item_tower(tf.constant(catalog)).numpy()
    pair_query = qv[[qrow[u] for u in test[0]]]
    positives = np.array([row[i] for i in test[1]])
    result = {"factorized_top_k": factorized_top_k_accuracy(pair_query @ iv.T, positives, TUTORIAL_KS)}
    for name, tokens in (("ids only", ("id",)), ("content only", modalities)):
        model.item_tower.active_modalities = tokens
        iv_a = model.item_tower(tf.constant(catalog)).numpy()
        qv_a = np.concatenate(
            [
                model.query_tower(tf.constant(queries[s : s + 512]), tf.constant(qh[s : s + 512])).numpy()
                for s in range(0, len(queries), 512)
            ]
        )
        model.item_tower.active_modalities = None
        result[f"ablation {name}"] = factorized_top_k_accuracy(
            qv_a[[qrow[u] for u in test[0]]] @ iv_a.T, positives, TUTORIAL_KS
        )
    result.update(
        {
            "modalities": list(modalities),
            "history_length": history_length,
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": f"adam lr {config.train.learning_rate}",
            "train_seconds": round(seconds, 2),
            "examples_per_second": round(len(train[0]) * epochs / seconds, 1),
        }
    )
    return result


def bench_tutorial(args) -> dict:
    train, test = tutorial_split()
    data_dir = prepare("ml100k", args.cache)
    from tfrs_mm import schema
    from tfrs_mm.training import data as data_lib

    catalog = sorted(
        data_lib.read_item_records(data_dir, schema.read_manifest(data_dir))["item_id"].tolist(), key=int
    )
    logger.info("tutorial: baseline")
    baseline = tutorial_baseline(train, test, catalog)
    logger.info("tutorial: baseline %s", baseline["factorized_top_k"])
    ours = tutorial_multimodal(train, test, data_dir, args.tutorial_epochs, args.tutorial_history, 1024)
    logger.info("tutorial: ours %s", ours["factorized_top_k"])
    return {
        "protocol": "ml-100k, TFRS basic-retrieval tutorial: 100k (user, movie) pairs shuffled with seed 42, "
        "80k train / 20k test, FactorizedTopK top-K categorical accuracy over all 1,682 movies, no masking",
        "notes": [
            "pairs read from u.data in file order (the tutorial reads TFDS, whose order differs): same "
            "protocol, not the identical split",
            "movies are identified by id (1,682 candidates), not by title as in the tutorial (1,664 titles)",
            "ours: train-pair histories are the user's train items strictly earlier in time (last "
            f"{args.tutorial_history}); a test pair's query uses the user's last {args.tutorial_history} "
            "train items; ablations re-score the same trained model",
        ],
        "train_pairs": len(train[0]),
        "test_pairs": len(test[0]),
        "baseline_tutorial_id_only": baseline,
        "ours_multimodal": ours,
        "published_top100": TUTORIAL_PUBLISHED_TOP100,
    }


# ------------------------------------------------------------------------ full-ranking (train_and_evaluate)

LIGHTGCN_ML1M = {"recall@10": 0.1861, "ndcg@10": 0.2538}  # RecBole's published ML-1M results


def _train_eval(name: str, data_dir: str, preset: str, overrides: list[str], args) -> dict:
    from tfrs_mm.training.retrieval import train_and_evaluate

    config = load_config(preset, overrides)
    workdir = os.path.join(args.cache, "runs", name)
    if os.path.exists(workdir):  # BackupAndRestore would resume an old run: start fresh
        import shutil

        shutil.rmtree(workdir)
    start = time.perf_counter()
    metrics = train_and_evaluate(config, data_dir, workdir, verbose=False)
    wall = time.perf_counter() - start
    test = metrics["test"]
    keep = {
        k: v for k, v in test.items() if k.split("@")[0] in ("recall", "ndcg", "hit", "precision", "coverage")
    }
    out = {
        "overrides": overrides,
        "test": keep,
        "users": test.get("users"),
        "training": {k: v for k, v in metrics["training"].items() if k != "history"},
        "final_train_loss": metrics["training"]["history"].get("loss", [None])[-1],
        "final_valid_loss": metrics["training"]["history"].get("val_loss", [None])[-1],
        "wall_seconds": round(wall, 1),
    }
    if "cold_items" in test:
        out["cold_items"] = test["cold_items"]
    if "ablation" in metrics:
        out["ablation"] = {
            k: {m: v[m] for m in ("recall@10", "recall@20", "ndcg@10", "ndcg@20") if m in v}
            for k, v in metrics["ablation"].items()
        }
    logger.info("%s: %s", name, {k: keep.get(k) for k in ("recall@10", "ndcg@10", "recall@20", "ndcg@20")})
    return out


def _train_overrides(args, epochs: int) -> list[str]:
    return [f"train.epochs={epochs}", f"train.batch_size={args.batch_size}"]


# Measured best on ml-1m (bench/results/retrieval_notes.md): wider towers, and users encoded by their
# history (mean-pooled) and features rather than a per-user embedding, which overfits.
# Warm items only (RecBole's split): no modality dropout. Dropping the id token teaches the content-only
# vectors that cold items need (the cold-item split keeps it) and costs warm items ~4 % Recall@10 here.
ML1M_MODEL = [
    "model.embedding_dim=128",
    "model.id_embedding_dim=64",
    "model.user_id_embedding=false",
    "model.history_pooling=mean",
    "model.modality_dropout=0.0",
]


def bench_ml1m(args) -> dict:
    data_dir = prepare("ml1m", args.cache)
    common = [*_train_overrides(args, args.ml1m_epochs), *ML1M_MODEL]
    ours = _train_eval("ml1m-ours", data_dir, "movielens", common, args)
    ids = _train_eval("ml1m-ids", data_dir, "movielens", [*common, "model.modalities=[]"], args)
    return {
        "protocol": "ml-1m, RecBole: ratings >= 3, random 8:1:1 per user, full ranking over all items, "
        "train and valid items masked (movielens preset)",
        "published_lightgcn": LIGHTGCN_ML1M,
        "ours_multimodal": ours,
        "baseline_id_only_two_tower": ids,
    }


def bench_cold(args) -> dict:
    from tfrs_mm import schema
    from tfrs_mm.evaluation import retrieval_eval
    from tfrs_mm.evaluation.ranking import recall_on_subset, top_k
    from tfrs_mm.training.retrieval import load_retrieval_data

    data_dir = prepare("ml1m-cold", args.cache)
    # The popularity prior ranks by train counts, which held-out (new) items lack: off for this split.
    overrides = [*_train_overrides(args, args.cold_epochs), "model.popularity_prior=false"]
    ours = _train_eval("ml1m-cold-ours", data_dir, "movielens", overrides, args)
    manifest = schema.read_manifest(data_dir)
    data = load_retrieval_data(data_dir, manifest, ())
    catalog = list(data.table.item_ids)
    truth = retrieval_eval.load_eval_split(data_dir, manifest, catalog, "test")
    ks = (10, 20, 50)
    # Popularity baseline: train counts, ties broken by catalog order (cold items all have count 0).
    scores = np.tile(data.frequencies[None, :], (len(truth.users), 1))
    lists = top_k(scores, max(ks), exclude=truth.known)
    cold = data.frequencies == 0
    pop = recall_on_subset(lists, truth.relevant, cold, ks)
    # Random ranking, for scale: expected cold recall@K of a uniformly random list.
    rng = np.random.default_rng(0)
    rand = recall_on_subset(
        top_k(rng.random(scores.shape), max(ks), exclude=truth.known), truth.relevant, cold, ks
    )
    return {
        "protocol": "ml-1m cold-item split: 20% of items held out with all their interactions in test, "
        "full ranking, train/valid items masked; Recall@K over cold test items",
        "cold_items": int(cold.sum()),
        "ours_multimodal": ours,
        "baseline_popularity": {"cold_items": pop},
        "reference_random": {"cold_items": rand},
    }


def bench_lastfm(args) -> dict:
    data_dir = prepare("lastfm", args.cache)
    common = _train_overrides(args, args.lastfm_epochs)
    ours = _train_eval("lastfm-ours", data_dir, "lastfm", common, args)
    ids = _train_eval("lastfm-ids", data_dir, "lastfm", [*common, "model.modalities=[]"], args)
    return {
        "protocol": "Last.fm-2K (HetRec), our random 8:1:1 per-user split (the dataset's mmrec split is not "
        "used), full ranking, train/valid items masked",
        "ours_multimodal": ours,
        "baseline_id_only_two_tower": ids,
    }


# ---------------------------------------------------------------------------- throughput


def throughput_worker(args) -> None:
    """One training run in this (fresh) process; prints a JSON line."""
    from tfrs_mm.training.retrieval import train_retrieval

    overrides = [f"train.epochs={args.tp_epochs}", f"train.batch_size={args.batch_size}"]
    if args.worker == "mirrored":
        overrides += ["train.strategy=mirrored", "train.num_logical_devices=2"]
    config = load_config("movielens", overrides)
    workdir = os.path.join(args.cache, "runs", f"throughput-{args.worker}")
    if os.path.exists(workdir):
        import shutil

        shutil.rmtree(workdir)
    _, _, info = train_retrieval(config, prepare("ml100k", args.cache), workdir, verbose=False)
    print("THROUGHPUT " + json.dumps({k: v for k, v in info.items() if k != "history"}), flush=True)


def bench_throughput(args) -> dict:
    out = {}
    for mode in ("default", "mirrored"):
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            mode,
            "--cache",
            args.cache,
            "--batch-size",
            str(args.batch_size),
            "--tp-epochs",
            str(args.tp_epochs),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [x for x in proc.stdout.splitlines() if x.startswith("THROUGHPUT ")]
        if proc.returncode or not line:
            out[mode] = {"error": proc.stderr[-2000:]}
        else:
            out[mode] = json.loads(line[-1][len("THROUGHPUT ") :])
        logger.info("throughput %s: %s", mode, out[mode])
    previous = _results.load("retrieval").get("tutorial", {})
    return {
        "protocol": "ml-100k preprocessed (ratings all, random 8:1:1 split), multimodal model, "
        f"batch {args.batch_size}, {args.tp_epochs} epochs, each mode in a fresh process; examples/s "
        "includes the per-epoch validation pass",
        "multimodal_default_1_device": out["default"],
        "multimodal_mirrored_2_logical_cpus": out["mirrored"],
        "tutorial_run": {
            "multimodal_examples_per_second": previous.get("ours_multimodal", {}).get("examples_per_second"),
            "tutorial_id_only_examples_per_second": previous.get("baseline_tutorial_id_only", {}).get(
                "examples_per_second"
            ),
        },
    }


# ---------------------------------------------------------------------------- report

BENCHES = {
    "tutorial": bench_tutorial,
    "ml1m": bench_ml1m,
    "cold": bench_cold,
    "lastfm": bench_lastfm,
    "throughput": bench_throughput,
}


def _f(x, digits=4):
    return "n/a" if x is None else f"{x:.{digits}f}"


def _training_note(key: str, value) -> str:
    if key == "popularity_prior" and isinstance(value, dict):
        zero = value.get("valid", {}).get("0.0", {})
        chosen = value.get("valid", {}).get(str(value.get("alpha")), {})
        metric = next(iter(chosen), "")
        return (
            f"popularity_prior alpha={value.get('alpha')} (chosen on {value.get('chosen_on')}: "
            f"{_f(chosen.get(metric))} against {_f(zero.get(metric))} without it)"
        )
    return f"{key}={value}"


def markdown(results: dict) -> str:
    lines = [
        "# Retrieval benchmarks",
        "",
        "Written by `bench/bench_retrieval.py`; every baseline was trained in the same run as the model it "
        "is compared with. Numbers are single runs (seed 42) on 2 CPU cores.",
        "",
        "| protocol | model | metric | ours | baseline | published target | met? |",
        "|---|---|---|---|---|---|---|",
    ]
    t = results.get("tutorial")
    if t:
        key = "factorized_top_k/top_{k}_categorical_accuracy"
        o, b = t["ours_multimodal"]["factorized_top_k"], t["baseline_tutorial_id_only"]["factorized_top_k"]
        for k in (1, 5, 10, 50, 100):
            target = f">= {t['published_top100']}" if k == 100 else ""
            met = ("yes" if o[key.format(k=k)] >= t["published_top100"] else "no") if k == 100 else ""
            lines.append(
                f"| ml-100k TFRS tutorial (80k/20k, no masking) | multimodal two-tower vs tutorial "
                f"ID-only | top-{k} accuracy | {_f(o[key.format(k=k)])} | {_f(b[key.format(k=k)])} | "
                f"{target} | {met} |"
            )
        kb = t["baseline_tutorial_id_only"].get("keras_evaluate", {}).get(key.format(k=100))
        lines.append(
            f"| ml-100k TFRS tutorial | tutorial ID-only, Keras `model.evaluate` (FactorizedTopK itself) | "
            f"top-100 accuracy | | {_f(kb)} | >= {t['published_top100']} | "
            f"{'yes' if (kb or 0) >= t['published_top100'] else 'no'} (baseline) |"
        )
        for name in ("ablation ids only", "ablation content only"):
            if name in t["ours_multimodal"]:
                lines.append(
                    f"| ml-100k TFRS tutorial | ours, {name[9:]} tokens at inference (same trained model) | "
                    f"top-100 accuracy | {_f(t['ours_multimodal'][name][key.format(k=100)])} | | | |"
                )
    m = results.get("ml1m")
    if m:
        for metric in ("recall@10", "ndcg@10", "recall@20", "ndcg@20"):
            target = m["published_lightgcn"].get(metric)
            ours = m["ours_multimodal"]["test"][metric]
            met = "" if target is None else ("yes" if ours >= target else "no")
            lines.append(
                f"| ml-1m RecBole (>=3, random 8:1:1, full ranking, masked) | multimodal vs ID-only "
                f"two-tower | {metric} | {_f(ours)} | {_f(m['baseline_id_only_two_tower']['test'][metric])}"
                f" | {'' if target is None else f'LightGCN {target}'} | {met} |"
            )
    c = results.get("cold")
    if c:
        for k in (10, 20, 50):
            ours = c["ours_multimodal"].get("cold_items", {}).get(f"recall@{k}")
            pop = c["baseline_popularity"]["cold_items"].get(f"recall@{k}")
            rand = c["reference_random"]["cold_items"].get(f"recall@{k}")
            lines.append(
                f"| ml-1m cold-item (20% items held out) | multimodal vs train popularity | cold "
                f"recall@{k} | {_f(ours)} | {_f(pop)} (random: "
                f"{_f(c['reference_random']['cold_items'].get(f'recall@{k}'))}) | beat popularity | "
                f"{'yes' if (ours or 0) > (pop or 0) else 'no'}"
                f"{' (but below random)' if (ours or 0) < (rand or 0) else ''} |"
            )
        ablation = c["ours_multimodal"].get("ablation", {})
        for setting in ("ids only", "text only", "image only"):
            if setting in ablation:
                lines.append(
                    f"| ml-1m cold-item | ours, {setting} tokens at inference (same trained model) | "
                    "recall@20 (test holds only cold items) | "
                    f"{_f(ablation[setting].get('recall@20'))} | | | |"
                )
    lf = results.get("lastfm")
    if lf:
        for metric in ("recall@20", "ndcg@20"):
            ours, ids = (
                lf["ours_multimodal"]["test"][metric],
                lf["baseline_id_only_two_tower"]["test"][metric],
            )
            lines.append(
                f"| Last.fm-2K (our random 8:1:1, full ranking, masked) | text+audio vs ID-only "
                f"two-tower | {metric} | {_f(ours)} | {_f(ids)} | beat ID-only | "
                f"{'yes' if ours > ids else 'no'} |"
            )
    tp = results.get("throughput")
    if tp:
        d = tp["multimodal_default_1_device"].get("examples_per_second")
        mi = tp["multimodal_mirrored_2_logical_cpus"].get("examples_per_second")
        lines.append(
            f"| ml-100k training throughput | mirrored (2 logical CPUs) vs 1 device | examples/s | "
            f"{_f(mi, 0)} | {_f(d, 0)} | | |"
        )
        tr = tp.get("tutorial_run", {})
        lines.append(
            f"| ml-100k tutorial pairs, training throughput | multimodal vs tutorial ID-only | "
            f"examples/s | {_f(tr.get('multimodal_examples_per_second'), 0)} | "
            f"{_f(tr.get('tutorial_id_only_examples_per_second'), 0)} | | |"
        )
    for name, metric in (("ml1m", "recall@10"), ("lastfm", "recall@20")):
        ablation = (results.get(name) or {}).get("ours_multimodal", {}).get("ablation", {})
        for setting in ("ids only", "text only", "image only", "audio only"):
            if setting in ablation:
                lines.append(
                    f"| {name} | ours, {setting} tokens at inference (same trained model) | {metric} | "
                    f"{_f(ablation[setting].get(metric))} | | | |"
                )
    lines += ["", "## Settings and notes", ""]
    for name, r in results.items():
        if name.startswith("_") or not isinstance(r, dict):
            continue
        lines.append(f"- **{name}**: {r.get('protocol', '')}")
        for note in r.get("notes", []):
            lines.append(f"  - {note}")
        for model in ("ours_multimodal", "baseline_id_only_two_tower", "baseline_tutorial_id_only"):
            if isinstance(r.get(model), dict):
                info = r[model]
                bits = []
                for key in (
                    "overrides",
                    "epochs",
                    "batch_size",
                    "optimizer",
                    "history_length",
                    "modalities",
                    "train_seconds",
                    "examples_per_second",
                    "wall_seconds",
                ):
                    if key in info:
                        bits.append(f"{key}={info[key]}")
                if "training" in info:
                    bits += [_training_note(k, v) for k, v in info["training"].items()]
                lines.append(f"  - {model}: " + ", ".join(bits))
        if "seconds" in r:
            lines.append(f"  - sub-benchmark wall time: {r['seconds']} s")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHES), help=f"comma list of {', '.join(BENCHES)}")
    parser.add_argument("--cache", default="/tmp/tfrs_mm_bench", help="raw/preprocessed data and run dirs")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--tutorial-epochs", type=int, default=10)
    parser.add_argument("--tutorial-history", type=int, default=50)
    parser.add_argument("--ml1m-epochs", type=int, default=20)  # the most: early stopping picks the epoch
    parser.add_argument("--cold-epochs", type=int, default=3)
    parser.add_argument("--lastfm-epochs", type=int, default=10)
    parser.add_argument("--tp-epochs", type=int, default=2)
    parser.add_argument("--report-only", action="store_true", help="rewrite retrieval.md from retrieval.json")
    parser.add_argument("--worker", choices=["default", "mirrored"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.worker:
        throughput_worker(args)
        return
    if args.report_only:
        _results.write_markdown("retrieval", _results.load("retrieval"), markdown)
        return
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}")
    for name in names:
        start = time.perf_counter()
        result = BENCHES[name](args)
        result["seconds"] = round(time.perf_counter() - start, 1)
        result["command"] = " ".join(
            [
                os.path.relpath(sys.executable, REPO),
                "bench/bench_retrieval.py",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        )
        _results.record("retrieval", name, result, markdown)
        logger.info("%s done in %.0fs", name, result["seconds"])


if __name__ == "__main__":
    main()
