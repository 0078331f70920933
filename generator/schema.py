"""Structured outputs: the JSON schema a task's outputs must follow (``task.output_schema``),
loaded from a schema file or a pydantic model, and the check each output then passes
(``jsonschema``; a failure is a counted drop with its reason)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from distill.errors import ConfigError

FIELD = "task.output_schema"


class OutputSchema:
    def __init__(self, spec: str | dict[str, Any]) -> None:
        """``spec``: a schema file (.json), a pydantic model (module:Class) or the schema itself."""
        import jsonschema

        self.spec = spec if isinstance(spec, str) else "the task's schema"
        self.schema = _load(spec) if isinstance(spec, str) else spec
        try:
            cls = jsonschema.validators.validator_for(self.schema)
            cls.check_schema(self.schema)
        except jsonschema.SchemaError as e:
            raise ConfigError(f"{FIELD}: {spec} is not a valid JSON schema ({e.message})") from None
        self.validator = cls(self.schema)
        #: the schema as compact JSON text: part of the sampling params (and so of cache keys)
        self.text = json.dumps(self.schema, sort_keys=True, separators=(",", ":"))

    def check(self, text: str) -> tuple[Any, str | None]:
        """(the parsed output, None) or (None, why it is not a valid output)."""
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            return None, f"not JSON ({e.msg})"
        err = next(iter(sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))), None)
        if err is not None:
            where = "/".join(str(p) for p in err.path) or "top level"
            return None, f"schema: {where}: {err.message}"
        return value, None


def _load(spec: str) -> dict[str, Any]:
    if spec.endswith(".json"):
        p = Path(spec)
        if not p.is_file():
            raise ConfigError(f"{FIELD}: schema file not found: {spec}")
        try:
            schema = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{FIELD}: {spec} line {e.lineno}: not JSON ({e.msg})") from None
        if not isinstance(schema, dict):
            raise ConfigError(f"{FIELD}: {spec} must hold a JSON object (a schema)")
        return schema
    mod, _, name = spec.partition(":")
    if not name:
        raise ConfigError(f"{FIELD}: expected a .json schema file or a pydantic model as module:Class, got {spec!r}")
    try:
        obj = getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"{FIELD}: cannot import {spec} ({e})") from None
    if not hasattr(obj, "model_json_schema"):
        raise ConfigError(f"{FIELD}: {spec} is not a pydantic model")
    return obj.model_json_schema()
