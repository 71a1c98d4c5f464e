"""Evaluation: perplexity and bits per byte (and, later, few-shot, reward-model and policy evaluation)."""
