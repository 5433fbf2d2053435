"""Attention, Built Up: the small shared package the notebooks build and import.

Read it in the order data flows, following one batch:

1. ``runtime``: seeds, devices and figure saving (every notebook starts with it).
2. ``tokenize``: text → token ids.
3. ``data`` (Multi30k, tiny Shakespeare) and ``synthetic`` (dates): the sentence pairs.
4. ``batching``: pairs → padded batches with masks.
5. ``embeddings``: ids → vectors + positions.
6. ``attention``: scaled dot-product attention, masks, ``MultiHeadAttention``.
7. ``layers``: layer norm, feed-forward, the residual sub-layer.
8. ``model``: encoder, decoder, ``Transformer``, ``make_model``.
9. ``schedules``, ``train``, ``checkpoint``: the learning rate, the one training loop, saving and resuming.
10. ``kv_cache`` and ``decode``: greedy and beam decoding, one new token at a time.
11. ``bleu``: scoring translations.
12. ``analysis`` and ``plots``: what the trained model attends to, and the pictures.

Beside the main path: ``checks`` (the argument checks every module uses), ``torch_compat``
(conversions to and from PyTorch's modules, for the equality proofs), ``exercises`` (the
self-checks at the end of every notebook), ``short_runs`` (the short training runs notebooks
04–06 share). ``bonus/`` holds the optional models of notebooks 07 and 08 and notebook 05's
SQuAD side section; nothing on the main path imports it.
"""

__version__ = "0.1.0"
