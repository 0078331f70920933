"""Device and dtype choice shared by everything that loads a torch model."""

from __future__ import annotations

from distill.errors import DistillError


def pick_device(device: str, what: str = "model") -> str:
    """``auto`` -> cuda when torch sees one, else cpu; a cuda device torch cannot see is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DistillError(f"{what}: device={device!r} but torch sees no CUDA device")
    return device


def release_model(owner) -> None:
    """Drop ``owner.model`` and hand its CUDA memory back. Safe to call twice."""
    if getattr(owner, "model", None) is None:
        return
    owner.model = None
    if str(getattr(owner, "device", "cpu")).startswith("cuda"):
        import torch

        torch.cuda.empty_cache()


def pick_dtype(dtype: str, device: str, what: str = "model"):
    """``auto``: bf16 on CUDA (fp16 where bf16 is missing; bf16 keeps fp32's range), fp32 on
    CPU (on the AVX2 CPUs measured here bf16 is slower)."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    except KeyError:
        raise DistillError(f"{what}: dtype must be auto, float32, bfloat16 or float16, not {dtype!r}") from None
