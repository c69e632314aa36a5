"""Fine-tuning LLM recommenders on TRL trainers: model loading, SFT, ranking-eval callback, model card."""
