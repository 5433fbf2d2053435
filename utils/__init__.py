"""Attention, Built Up: the small shared package the notebooks build and import.

Read it in the order data flows: ``tokenize`` → ``data`` /
``synthetic`` → ``batching`` → ``embeddings`` → ``attention`` → ``layers`` → ``model`` → ``train`` →
``decode`` / ``bleu`` → ``plots``. ``numpy_transformer`` is the bonus NumPy model with hand-written
backprop (notebook 07); ``gpt`` the decoder-only model with a KV cache (notebook 08). ``common`` holds seeds, devices and figure saving; ``exercises`` the
self-checks used at the end of every notebook.
"""

__version__ = "0.1.0"
