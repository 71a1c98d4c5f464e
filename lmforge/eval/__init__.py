"""Evaluation: perplexity and bits per byte, in-context (few-shot) evaluation (and, later, reward-model and policy evaluation)."""
