"""Optional side trips, not on the main path: nothing in ``utils`` outside this folder imports them.

``numpy_transformer`` (with its pieces in ``numpy_layers``) is a Transformer language model in NumPy
with every gradient written by hand (notebook 07); ``gpt`` the decoder-only model with a KV cache
(notebook 08); ``squad`` loads any Hugging Face data set as (source, target) pairs and scores
SQuAD-style answers (bonus notebook 09).
"""
