"""Pytest setup: the opt-in slow tier."""

import os

import pytest

import tfrs_mm  # noqa: F401  (selects tf-keras before any test module touches tf.keras)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("TFRS_MM_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow tier: run with --runslow or TFRS_MM_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def encoder_cache(tmp_path_factory):
    """One encoder cache per test session: each bundled encoder is exported at most once."""
    return str(tmp_path_factory.mktemp("encoder_cache"))


@pytest.fixture(scope="session")
def sample_dataset(tmp_path_factory, encoder_cache):
    """A preprocessed sample catalog (real encoders, demo preset): `<root>/raw` and `<root>/data`."""
    from tfrs_mm import cli
    from tfrs_mm.data.synthetic import SampleSpec, generate_sample

    root = tmp_path_factory.mktemp("sample")
    generate_sample(str(root / "raw"), SampleSpec(num_items=120, num_users=80, seed=5))
    argv = ["preprocess", "--raw", str(root / "raw"), "--out", str(root / "data")]
    argv += ["--model-cache", encoder_cache, "--preset", "demo", "--runner=DirectRunner"]
    assert cli.main(argv) == 0
    return root
