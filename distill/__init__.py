"""distill: a symbolic knowledge distillation data generator.

The pipe: seeds -> teacher (``distill.generator``) -> critics (``distill.critics``)
-> corpus -> student (``distill.trainers``). One :class:`~distill.record.Record`
travels the whole way. Importing this package is cheap: torch, transformers and
vllm are imported only inside the code that needs them.
"""

from distill.record import Record
from distill.stage import Stage

__version__ = "0.1.0"
__all__ = ["Record", "Stage", "__version__"]
