"""The corpus stage: kept records -> a Hugging Face dataset with a card, plots and decontamination."""
