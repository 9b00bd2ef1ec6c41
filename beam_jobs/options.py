"""Command-line flags of the preprocess jobs, shared by `tfrs-mm preprocess` and `python -m beam_jobs.*`.

Argparse only (no Beam import), so `tfrs-mm --help` stays fast. Flags not
listed here are Beam pipeline options and pass through to the runner.
"""

from __future__ import annotations

import argparse
import dataclasses

SPLITS = ("random", "leave-last-out", "temporal", "cold-item")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config file (sections: data, model, train, ...)")
    parser.add_argument("--preset", help="named preset: default, demo, movielens, lastfm")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one config field, e.g. --set data.history_length=50 (repeatable)",
    )  # fmt: skip


def add_preprocess_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `tfrs-mm preprocess`."""
    parser.add_argument("--raw", required=True, help="raw dataset directory (local path or gs:// URI)")
    parser.add_argument("--out", required=True, help="dataset directory to write")
    parser.add_argument("--split", choices=SPLITS, help="split protocol (default: config data.split)")
    parser.add_argument("--items", help="items file pattern when not RAW/items.csv (CSV, JSONL or Parquet)")
    parser.add_argument(
        "--model-cache", help="where encoders are exported (default $TFRS_MM_CACHE or ~/.cache/tfrs_mm); "
        "use a gs:// URI on Dataflow so workers can read it",
    )  # fmt: skip
    parser.add_argument(
        "--pseudonymize-users", action="store_true",
        help="replace user ids with keyed hashes before anything is written",
    )  # fmt: skip
    parser.add_argument("--pseudonym-key-file", help="secret key file (default $TFRS_MM_PSEUDONYM_KEY)")
    add_config_arguments(parser)


def resolve_preprocess_config(args: argparse.Namespace):
    """The resolved `Config` for parsed preprocess flags (`--split` and `--pseudonymize-users` win)."""
    from tfrs_mm.config import load_config

    config = load_config(args.config, args.preset, args.overrides)
    data = config.data
    if args.split:
        data = dataclasses.replace(data, split=args.split)
    if args.pseudonymize_users:
        data = dataclasses.replace(data, pseudonymize_users=True)
    return dataclasses.replace(config, data=data)
