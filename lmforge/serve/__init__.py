"""Talking to a model: the terminal chat (`terminal`), the OpenAI-compatible server with its
request batching (`app`, `batcher`) and chat page (`static/chat.html`), and the labeling page
where people rank sampled answers (`labeling`, `static/label.html`)."""
