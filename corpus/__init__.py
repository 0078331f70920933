"""The corpus stage: kept records -> a Hugging Face dataset with a card, plots and decontamination."""


def __getattr__(name: str):
    # lazy: `import distill.corpus` must not import datasets
    if name in ("run_corpus", "load_corpus"):
        from distill.corpus import build

        return getattr(build, name)
    raise AttributeError(name)
