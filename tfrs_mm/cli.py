"""`tfrs-mm`: one entry point whose subcommands map to the stages of DESIGN.md §4.

This module only parses arguments and prints; each subcommand calls a library
function.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from beam_jobs.options import add_config_arguments, add_preprocess_arguments
from tfrs_mm import __version__

EXIT_OK, EXIT_INVALID = 0, 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfrs-mm", description="Multimodal recommender stack on TensorFlow."
    )
    parser.add_argument("--version", action="version", version=f"tfrs-mm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_serving_commands(sub)
    p = sub.add_parser("demo", help="the whole pipeline on a generated sample catalog")
    p.add_argument("--out", default="tfrs_mm_demo", help="working directory for the demo")
    return parser


def _add_data_commands(sub) -> None:
    p = sub.add_parser("generate-sample", help="write a synthetic raw catalog with real images and audio")
    p.add_argument("--out", required=True, help="output raw dataset directory")
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--audio-seconds", type=float, default=3.0)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier sample catalog in --out")

    from tfrs_mm.data.loaders import DATASETS

    p = sub.add_parser("load-dataset", help="convert a public dataset into the raw format")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--source", required=True, help="the dataset folder, or the folder holding it")
    p.add_argument("--out", required=True, help="output raw dataset directory")
    p.add_argument("--allow-count-mismatch", action="store_true", help="write even if counts differ")

    p = sub.add_parser("validate", help="check a raw dataset; exit 1 and list every problem")
    p.add_argument("raw", help="raw dataset directory")
    p.add_argument("--quiet-warnings", action="store_true", help="list errors only")

    p = sub.add_parser("preprocess", help="Beam jobs: raw dataset -> embedded TFRecords + manifest")
    add_preprocess_arguments(p)


def _add_model_commands(sub) -> None:
    p = sub.add_parser("train", help="train the retrieval model, then the ranker (same --workdir)")
    p.add_argument("model", choices=["retrieval", "ranking"])
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    add_config_arguments(p)

    p = sub.add_parser("evaluate", help="full-ranking metrics, ablation, report and plots")
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--report")

    p = sub.add_parser("index", help="build and tune the ScaNN index")
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--recall-target", type=float, default=0.95)


def _add_serving_commands(sub) -> None:
    p = sub.add_parser("export", help="write SavedModels in TF Serving's layout")
    p.add_argument("--data", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--out", default="saved_models")

    p = sub.add_parser("serve", help="serve exports over TF Serving's REST API")
    p.add_argument("--model_config_file", required=True)
    p.add_argument("--rest_api_port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument(
        "--custom_ops",
        default="",
        help="comma list of custom op libraries to allow (scann); stock TF Serving has none",
    )
    p.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0)
    p.add_argument(
        "--max_request_bytes", type=int, default=64 * 2**20, help="bigger request bodies get HTTP 413"
    )
    p.add_argument(
        "--read_timeout_seconds",
        type=float,
        default=30.0,
        help="a request not received whole within this time gets HTTP 408 (slow or stalled clients)",
    )

    p = sub.add_parser("query", help="ask a running server for recommendations")
    p.add_argument("--url", required=True)
    p.add_argument("--model", default="recommender")
    p.add_argument("--user", required=True)
    p.add_argument("--history", default="", help="comma-separated item ids, oldest first")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--version", type=int)


def _generate_sample(args: argparse.Namespace) -> int:
    from tfrs_mm.data.synthetic import SampleSpec, generate_sample

    spec = SampleSpec(
        num_items=args.items, num_users=args.users, seed=args.seed, audio_seconds=args.audio_seconds
    )
    info = generate_sample(args.out, spec, overwrite=args.overwrite)
    print(f"wrote sample catalog to {args.out}: " + ", ".join(f"{k} {v:,}" for k, v in info.counts.items()))
    print(info.notes[-1])
    return EXIT_OK


def _load_dataset(args: argparse.Namespace) -> int:
    from tfrs_mm.data.loaders import format_report, load_dataset

    info = load_dataset(args.dataset, args.source, args.out, allow_count_mismatch=args.allow_count_mismatch)
    print(format_report(info))
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from tfrs_mm.data.validate import validate_raw

    report = validate_raw(args.raw)
    shown = report.errors if args.quiet_warnings else report.problems
    for problem in shown:
        print(problem)
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_INVALID


def _preprocess(args: argparse.Namespace) -> int:
    import logging

    from beam_jobs.preprocess import run_from_args

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(run_from_args(args, args.beam_args).summary())
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    import logging

    from tfrs_mm.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    config = load_config(args.config, args.preset, args.overrides)
    if args.model == "ranking":
        from tfrs_mm.training.ranking import ranking_workdir, train_and_evaluate_ranking

        try:
            metrics = train_and_evaluate_ranking(config, args.data, args.workdir)
        except FileNotFoundError as e:
            print(f"tfrs-mm train ranking: {e}", file=sys.stderr)
            return EXIT_INVALID
        print(format_ranking(metrics))
        out = ranking_workdir(args.workdir)
        print(f"metrics: {out}/metrics.json; TensorBoard: tensorboard --logdir {out}/logs")
        return EXIT_OK
    from tfrs_mm.training.retrieval import train_and_evaluate

    metrics = train_and_evaluate(config, args.data, args.workdir)
    print(format_metrics(metrics))
    print(f"metrics: {args.workdir}/metrics.json; TensorBoard: tensorboard --logdir {args.workdir}/logs")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    from tfrs_mm.training.retrieval import evaluate_workdir

    metrics = evaluate_workdir(args.data, args.workdir, args.report)
    print(format_metrics(metrics))
    if args.report:
        print(f"report: {args.report}/report.md")
    return EXIT_OK


def format_metrics(metrics: dict) -> str:
    """Test metrics and the ablation as a short table."""
    test = metrics["test"]
    keys = [
        k for k in ("recall@10", "ndcg@10", "recall@50", "hit@10", "coverage@10", "novelty@10") if k in test
    ]
    lines = [
        f"test users {test['users']:,}: "
        + ", ".join(f"{k} {test[k]:.4f}" for k in keys if test[k] is not None)
    ]
    for name, result in metrics.get("ablation", {}).items():
        lines.append(f"  {name:<11} recall@10 {result['recall@10']:.4f}  ndcg@10 {result['ndcg@10']:.4f}")
    if "ranking" in metrics:
        lines.append(format_ranking(metrics["ranking"]))
    return "\n".join(lines)


def format_ranking(metrics: dict) -> str:
    """Validation list metrics, retrieval vs retrieval + ranking, and explanation quality."""
    lines = []
    if "valid" in metrics:
        valid = metrics["valid"]
        lines.append(
            f"ranker, valid lists: auc {valid['auc']:.4f}  ndcg@10 {valid['ndcg@10']:.4f}"
            f"  mrr {valid['mrr']:.4f}"
        )
    two = metrics["two_stage"]
    for name in ("retrieval", "retrieval+ranking"):
        lines.append(
            f"  {name:<17} recall@10 {two[name]['recall@10']:.4f}  ndcg@10 {two[name]['ndcg@10']:.4f}"
            f"  (test users {two['users']:,}, top-{two['candidates']} candidates)"
        )
    explained = metrics.get("explanations")
    if explained and explained.get("driver_attention") is not None:
        lines.append(
            f"  explanations: attention on the true driver item {explained['driver_attention']:.3f} "
            f"(chance {explained['driver_attention_chance']:.3f}); weight of the true driver modality "
            f"{explained['modality_weight']:.3f} (chance {explained['modality_weight_chance']:.3f})"
        )
    return "\n".join(lines)


def _index(args: argparse.Namespace) -> int:
    import logging

    from tfrs_mm.indexing import build_index, format_index_summary

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        result = build_index(args.data, args.workdir, recall_target=args.recall_target)
    except FileNotFoundError as e:
        print(f"tfrs-mm index: {e}", file=sys.stderr)
        return EXIT_INVALID
    print(format_index_summary(result))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    import logging

    from tfrs_mm.export import export_all
    from tfrs_mm.indexing import latest_version_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    index_dir = latest_version_dir(args.workdir)  # the latest `tfrs-mm index` version, if any
    try:
        summary = export_all(args.data, args.workdir, args.out, index_dir=index_dir)
    except FileNotFoundError as e:
        print(f"tfrs-mm export: {e}", file=sys.stderr)
        return EXIT_INVALID
    for name, model in summary["models"].items():
        ops = "core ops only" if model["core_ops_only"] else f"needs custom ops {model['custom_ops']}"
        print(f"{name:<16} version {model['version']:<3} {model['path']}  ({ops})")
    for name, reason in summary.get("skipped", {}).items():
        print(f"{name:<16} skipped: {reason}")
    print(f"models.config: {summary['models_config']} (stock TF Serving)")
    print(f"with ScaNN:    {summary['models_config_custom_ops']} (needs --custom_ops scann)")
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    import logging

    from tfrs_mm.serving.server import serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    custom_ops = tuple(op.strip() for op in args.custom_ops.split(",") if op.strip())
    serve(
        args.model_config_file,
        host=args.host,
        port=args.rest_api_port,
        custom_ops=custom_ops,
        poll_seconds=args.file_system_poll_wait_seconds,
        max_request_bytes=args.max_request_bytes,
        read_timeout_seconds=args.read_timeout_seconds,
    )
    return EXIT_OK


def _query(args: argparse.Namespace) -> int:
    from tfrs_mm.serving.client import ServingClient, ServingError

    history = [i.strip() for i in args.history.split(",") if i.strip()]
    with ServingClient(args.url) as client:
        try:
            recommendations = client.recommend(
                args.user, history, k=args.k, model=args.model, version=args.version
            )
        except ServingError as e:
            print(f"tfrs-mm query: {e}", file=sys.stderr)
            return EXIT_INVALID
    print(f"user {args.user}, history {history or '(none)'}: top {len(recommendations)} from {args.model}")
    for rank, rec in enumerate(recommendations, 1):
        why = ""
        if rec.history_attention and history:
            # Padding positions come first when the server pads; the history given is the tail.
            weights = rec.history_attention[-len(history) :]
            best = max(range(len(weights)), key=weights.__getitem__)
            why = f"  because of {history[best]} ({weights[best]:.2f})"
        print(f"{rank:>3}. {rec.item_id:<20} {rec.score:8.4f}{why}")
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from tfrs_mm.demo import run_demo

    return run_demo(args.out)


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "generate-sample": _generate_sample,
    "load-dataset": _load_dataset,
    "validate": _validate,
    "preprocess": _preprocess,
    "train": _train,
    "evaluate": _evaluate,
    "index": _index,
    "export": _export,
    "serve": _serve,
    "query": _query,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one subcommand; returns the process exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ info logs off the console
    parser = build_parser()
    # Beam pipeline options (--runner, --direct_num_workers, ...) pass through to preprocess.
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and args.command != "preprocess":
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    args.beam_args = beam_args
    handler = _HANDLERS[args.command]
    try:
        return handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError) as e:
        # Bad input (or a diverging learning rate) is the user's to fix: say what and where, no traceback.
        print(f"tfrs-mm {args.command}: error: {e}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
