"""Critic types by config name. Classes are imported only when a config names them, so a
rules-only filter never loads torch or a model."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from distill.errors import ConfigError

CRITICS: dict[str, str] = {
    "length_ratio": "distill.critics.rules:LengthRatio",
    "compression": "distill.critics.rules:Compression",
    "lexical": "distill.critics.rules:LexicalDissimilarity",
    "numbers": "distill.critics.rules:NumberConsistency",
    "copy": "distill.critics.rules:CopyCritic",
    "negation": "distill.critics.rules:NegationFlip",
    "wellformed": "distill.critics.rules:WellFormed",
    "commonsense_form": "distill.critics.commonsense:CommonsenseForm",
    "nli": "distill.critics.nli:NLICritic",
    "lm_judge": "distill.critics.lm_judge:LMJudgeCritic",
    "likelihood": "distill.critics.likelihood:LikelihoodCritic",
    "trained": "distill.critics.trained:TrainedCritic",
    "cross_encoder": "distill.critics.cross_encoder:CrossEncoderCritic",
    "embed_similarity": "distill.critics.similarity:EmbeddingSimilarity",
    "entities": "distill.critics.consistency:ConsistencyCritic",
    "coverage": "distill.critics.summary:Coverage",
    "extractive": "distill.critics.summary:Extractive",
    "infosum": "distill.critics.infosum:InfoSumCritic",
}


def critic_class(type_name: str) -> type:
    if type_name not in CRITICS:
        raise ConfigError(f"filter.critics: unknown critic type {type_name!r}; known: {', '.join(sorted(CRITICS))}")
    module, cls = CRITICS[type_name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_critic(type_name: str, kwargs: dict[str, Any], where: str = "filter.critics", **context: Any):
    """Build a critic from its config entry. ``context`` offers shared settings (the run's
    ``teacher`` config, the dedup ``encoder``) to constructors that declare a parameter of
    that name and were not given one in the entry."""
    cls = critic_class(type_name)
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [n for n in params if n not in ("self",) and params[n].kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [k for k in kwargs if k not in params and not accepts_any]
    if unknown:
        raise ConfigError(f"{where} ({type_name}): unknown key(s) {', '.join(unknown)}; "
                          f"{type_name} takes: {', '.join(a for a in allowed if a not in context) or 'nothing'}")
    extra = {k: v for k, v in context.items() if k in params and k not in kwargs}
    try:
        return cls(**kwargs, **extra)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where} ({type_name}): {e}") from e
