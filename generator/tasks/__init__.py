"""Tasks say what to generate: their seed items, their prompts, and how completions
become records. Adding a task means adding a config class in ``distill.config`` and a
small module here; the engine (backends, cache, shards) is untouched."""

from __future__ import annotations

from distill.generator.tasks.base import Task


def build_task(cfg, seed: int) -> Task:
    if cfg.name == "paraphrase_pairs":
        from distill.generator.tasks.paraphrase import ParaphrasePairs

        return ParaphrasePairs(cfg, seed)
    if cfg.name == "paraphrase_instruct":
        from distill.generator.tasks.paraphrase import ParaphraseInstruct

        return ParaphraseInstruct(cfg, seed)
    if cfg.name == "template":
        from distill.generator.tasks.template import TemplatePrompts

        return TemplatePrompts(cfg, seed)
    if cfg.name == "commonsense":
        from distill.generator.tasks.commonsense import Commonsense

        return Commonsense(cfg, seed)
    if cfg.name == "summarize_instruct":
        from distill.generator.tasks.summarize import SummarizeInstruct

        return SummarizeInstruct(cfg, seed)
    if cfg.name == "summarize_pairs":
        from distill.generator.tasks.summarize import SummarizePairs

        return SummarizePairs(cfg, seed)
    raise ValueError(f"unknown task {cfg.name!r}")


__all__ = ["Task", "build_task"]
