"""Teacher backends. Import a backend module only when it is used: each one pulls in
its own heavy dependency (torch/transformers, vllm, openai) at construction time."""

from distill.generator.backends.base import (
    Backend,
    Completion,
    Prompt,
    Request,
    Result,
    SamplingParams,
    Usage,
)

__all__ = ["make_backend", "Backend", "Completion", "Prompt", "Request", "Result", "SamplingParams", "Usage"]


def make_backend(cfg) -> Backend:
    """Build the backend a :class:`distill.config.TeacherConfig` asks for."""
    if cfg.backend == "transformers":
        from distill.generator.backends.transformers_backend import TransformersBackend

        return TransformersBackend(model=cfg.model, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)
    if cfg.backend == "vllm":
        from distill.generator.backends.vllm_backend import VLLMBackend

        return VLLMBackend(model=cfg.model, **cfg.vllm.model_dump())
    if cfg.backend == "openai":
        from distill.errors import ConfigError
        from distill.generator.backends.openai_backend import OpenAIBackend

        if not cfg.model:
            raise ConfigError("teacher.model: the openai backend needs the served model's name (e.g. gpt-4o-mini)")
        return OpenAIBackend(model=cfg.model, **cfg.openai.model_dump(exclude={"tokenizer"}))
    raise ValueError(f"unknown backend {cfg.backend!r}")
