"""The exercise checks of notebook 04 (see :mod:`utils.exercises` for how a check reports)."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

import utils.model
from utils.attention import causal_mask, padding_mask
from utils.embeddings import TokenEmbedding
from utils.tokenize import BOS_ID, EOS_ID, PAD_ID


# -- Exercise 1 · the parameter count of a decoder-only model, by formula
def _decoder_only_reference(vocab: int, n_layers: int, d_model: int, d_ff: int) -> int:
    """Counted from the modules themselves: a tied table, pre-LN self-attention + FFN layers, a final norm,
    a generator whose weight is the table and whose bias is its own."""
    emb = TokenEmbedding(vocab, d_model, PAD_ID)
    stack = utils.model.Encoder(n_layers, d_model, 4, d_ff, 0.0, True)     # self-attention + FFN, pre-LN
    generator = nn.Linear(d_model, vocab)
    generator.weight = emb.embedding.weight                                 # tied: counted once
    return utils.model.count_parameters(nn.ModuleList([emb, stack, generator]))


def check_decoder_only_param_count(count: Callable[[int, int, int, int], int]) -> None:
    """Notebook 04: ``count(vocab, n_layers, d_model, d_ff)`` is the number of parameters of a decoder-only
    model (pre-LN self-attention + FFN layers, a final LayerNorm, a tied embedding and generator, a
    generator bias), written as a formula. Says which part is off (the vocabulary's, a layer's, or one
    counted once), never the count."""
    for vocab, n, d, ff in [(11, 1, 16, 32), (50, 2, 32, 64), (300, 3, 24, 40), (65, 6, 128, 512)]:
        got = count(vocab, n, d, ff)
        assert isinstance(got, int) and not isinstance(got, bool), f"return an int, got {type(got).__name__}"
        diff = got - _decoder_only_reference(vocab, n, d, ff)
        if diff == 0:
            continue
        where = f"vocab={vocab}, n_layers={n}, d_model={d}, d_ff={ff}: your count is too {'large' if diff > 0 else 'small'}"
        if count(vocab + 1, n, d, ff) - _decoder_only_reference(vocab + 1, n, d, ff) != diff:
            raise AssertionError(f"{where}, by an amount that grows with the vocabulary: check the embedding "
                                 "table, the generator and what tying shares")
        if count(vocab, n + 1, d, ff) - _decoder_only_reference(vocab, n + 1, d, ff) != diff:
            raise AssertionError(f"{where}, by an amount that grows with the number of layers: check what one "
                                 "layer holds")
        raise AssertionError(f"{where}, by a part the model holds once, whatever its depth and vocabulary")


# -- Exercise 2 · a detector of target positions that see the future
@contextlib.contextmanager
def _causal_mask_replaced_by(mask_fn: Callable[..., Tensor]) -> Iterator[None]:
    """Inside the block, utils.model builds its decoder masks with ``mask_fn(size, device)``."""
    original = utils.model.causal_mask
    utils.model.causal_mask = mask_fn
    try:
        yield
    finally:
        utils.model.causal_mask = original


def _off_by_one_mask(size: int, device=None) -> Tensor:
    return torch.ones(size, size, dtype=torch.bool, device=device).tril(diagonal=1)    # sees one step ahead


def _two_ahead_mask(size: int, device=None) -> Tensor:
    mask = causal_mask(size, device)
    mask[1, 3] = True                                                       # position 1 sees position 3 only
    return mask


def _leaks_reference(model: nn.Module, src_ids: Tensor, tgt_ids: Tensor) -> list[int]:
    leaks = set()
    with torch.no_grad():
        base = model(src_ids, tgt_ids)
        for s in range(1, tgt_ids.shape[1]):
            changed = tgt_ids.clone()
            changed[:, s] = (changed[:, s] - 4 + 1) % (base.shape[-1] - 4) + 4
            moved = (model(src_ids, changed) - base)[:, :s].abs().amax(dim=(0, 2))   # (s,)
            leaks.update(int(t) for t in torch.nonzero(moved > 0).flatten())
    return sorted(leaks)


def check_positions_that_see_the_future(detect: Callable[..., list[int]]) -> None:
    """Notebook 04: ``detect(model, src_ids, tgt_ids)`` returns the sorted target positions whose logits change
    when a later target token changes. Fed the real causal mask, then three leaking ones (each position
    sees the next; one position sees two steps ahead only; a leak in a model whose logits are tiny);
    says which case it gets wrong and whether it misses leaks or reports false ones, never the positions."""
    torch.manual_seed(0)
    model = utils.model.make_model(20, 20, n_layers=2, d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    model = model.to(torch.float64).eval()
    src_ids, tgt_ids = torch.randint(4, 20, (2, 5)), torch.randint(4, 20, (2, 7))
    one_layer = utils.model.make_model(20, 20, n_layers=1, d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    one_layer = one_layer.to(torch.float64).eval()                          # a leak two ahead stays two ahead
    tiny = utils.model.make_model(20, 20, n_layers=2, d_model=16, n_heads=2, d_ff=32, dropout=0.0)
    tiny = tiny.to(torch.float64).eval()
    with torch.no_grad():
        tiny.generator.weight.mul_(1e-4)
        tiny.generator.bias.mul_(1e-4)
    cases = [("with the correct causal mask", model, causal_mask),
             ("under a mask that lets every position see the next one", model, _off_by_one_mask),
             ("under a mask that lets one position see two steps ahead, but not one", one_layer, _two_ahead_mask),
             ("under a leaking mask in a model whose logits are tiny (any change counts)", tiny, _off_by_one_mask)]
    for case, net, mask_fn in cases:
        with _causal_mask_replaced_by(mask_fn):
            got = detect(net, src_ids.clone(), tgt_ids.clone())
            expected = _leaks_reference(net, src_ids, tgt_ids)
        assert isinstance(got, list) and all(isinstance(t, int) for t in got), \
            f"return a list of ints (target positions), got {type(got).__name__}"
        assert got == sorted(set(got)), "return each position once, in increasing order"
        false, missed = set(got) - set(expected), set(expected) - set(got)
        assert not false, f"{case}, your function reports {len(false)} position(s) that do not see the future " \
                          "(a position may see its own token and the ones before it)"
        assert not missed, f"{case}, your function misses {len(missed)} position(s) that see the future"


# -- Exercise 4 · greedy decoding that runs the encoder once
class _ScriptedModel(nn.Module):
    """A stand-in for the Transformer with ``encode``, ``decode`` and ``pad_id``, whose logits the check
    writes. Each source row (known by its first id) follows a script of tokens; at every step the
    scripted token scores 4, but ``<pad>`` scores 6 and ``<bos>`` 5, so a plain argmax picks them. A prefix
    that left the script gets other real tokens; after ``<eos>`` the script goes on with real tokens."""

    pad_id = PAD_ID

    def __init__(self, scripts: dict[int, list[int]], vocab: int = 12):
        super().__init__()
        self.scripts, self.vocab, self.encoder_runs = scripts, vocab, 0

    def encode(self, src_ids: Tensor) -> Tensor:
        self.encoder_runs += 1
        return src_ids[..., None].to(torch.float32)                        # a stand-in memory (batch, S, 1)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        assert isinstance(memory, Tensor) and torch.equal(memory, src_ids[..., None].to(torch.float32)), \
            "model.decode was not given the memory that model.encode returned for these sources"
        batch, length = tgt_ids.shape
        logits = torch.zeros(batch, length, self.vocab)
        for b in range(batch):
            script = self.scripts[int(src_ids[b, 0])]
            for t in range(length):
                on_script = int(tgt_ids[b, 0]) == BOS_ID and tgt_ids[b, 1:t + 1].tolist() == script[:t]
                nxt = script[t] if on_script and t < len(script) else 3 + (b + 2 * t) % (self.vocab - 3)
                logits[b, t, nxt] = 4.0
                logits[b, t, PAD_ID], logits[b, t, BOS_ID] = 6.0, 5.0
        return logits

    def forward(self, src_ids: Tensor, tgt_ids: Tensor) -> Tensor:
        return self.decode(tgt_ids, self.encode(src_ids), src_ids)


def _greedy_reference(model: nn.Module, src_ids: Tensor, max_len: int) -> Tensor:
    with torch.no_grad():
        memory = model.encode(src_ids)
        ys = torch.full((src_ids.shape[0], 1), BOS_ID)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool)
        for _ in range(max_len):
            logits = model.decode(ys, memory, src_ids)[:, -1]
            logits[:, [PAD_ID, BOS_ID]] = float("-inf")
            next_id = logits.argmax(-1).masked_fill(done, PAD_ID)
            ys = torch.cat([ys, next_id[:, None]], dim=1)
            done |= next_id == EOS_ID
            if done.all():
                break
    return ys[:, 1:]


def _check_greedy_case(case: str, greedy: Callable[..., Tensor], model: nn.Module, src_ids: Tensor,
                       max_len: int, expected: Tensor) -> None:
    runs_before = getattr(model, "encoder_runs", None)
    encoder_calls = []
    handle = model.encoder.register_forward_hook(lambda *_: encoder_calls.append(1)) \
        if hasattr(model, "encoder") else None
    try:
        out = greedy(model, src_ids.clone(), max_len)
    finally:
        if handle is not None:
            handle.remove()
    runs = len(encoder_calls) if runs_before is None else model.encoder_runs - runs_before
    assert isinstance(out, Tensor) and out.dim() == 2 and out.shape[0] == src_ids.shape[0], \
        f"{case}: return (batch, generated) ids, one row a source, got {getattr(out, 'shape', type(out).__name__)}"
    assert runs == 1, f"{case}: the encoder ran {runs} times for one batch; the source does not change"
    assert not (out == BOS_ID).any(), f"{case}: <bos> appears in the output; it starts the decoder's input, it " \
                                      "is never generated"
    ended = (out == EOS_ID).long().cumsum(dim=1)                           # (batch, n): > 0 from <eos> on
    after_eos = ended - (out == EOS_ID).long() > 0
    assert not ((out == PAD_ID) & ~after_eos).any(), f"{case}: a row holds <pad> before its <eos>; <pad> is " \
                                                     "never a real output"
    assert not (after_eos & (out != PAD_ID)).any(), f"{case}: a row goes on after its <eos> with tokens other " \
                                                    "than <pad>"
    assert out.shape[1] <= expected.shape[1], f"{case}: your output is longer than greedy decoding's: it should " \
                                              "stop once every row has produced <eos>, or after max_len tokens"
    assert out.shape[1] == expected.shape[1], f"{case}: your output is shorter than greedy decoding's"
    wrong = (out != expected).nonzero()
    assert not len(wrong), f"{case}: row {int(wrong[0, 0])} differs from greedy decoding at step {int(wrong[0, 1])}"


def check_greedy_encode_once(greedy: Callable[..., Tensor]) -> None:
    """Notebook 04: ``greedy(model, src_ids, max_len)`` encodes once, then appends the argmax of
    ``model.decode(ys, memory, src_ids)[:, -1]`` without ever choosing ``<pad>`` or ``<bos>``, pads a row
    after its ``<eos>``, stops when every row has ended or after ``max_len`` tokens and returns
    ``(batch, n)`` ids without ``<bos>``. Fed a scripted model whose rows end at different steps and
    whose ``<pad>`` and ``<bos>`` win a plain argmax, then a small random Transformer."""
    scripts = {4: [5, 6, EOS_ID, 7, 8, 9, 10, 11, 5, 6], 5: [7, 3, 9, 4, 8, EOS_ID, 6, 6, 6, 6],
               6: [EOS_ID, 9, 9, 9, 9, 9, 9, 9, 9, 9], 7: [11, 10, 9, 8, EOS_ID, 3, 3, 3, 3, 3],
               8: [3, 4, 5, 6, 7, 8, 9, 10, 11, 3]}                        # row 8 never ends
    src_ids = torch.tensor([[4, 9, 3], [5, 3, PAD_ID], [6, 6, 6], [7, 3, 3]])
    model = _ScriptedModel(scripts)
    _check_greedy_case("a scripted model whose rows end at different steps, max_len=8", greedy, model, src_ids, 8,
                       _greedy_reference(_ScriptedModel(scripts), src_ids, 8))
    src_ids = torch.tensor([[8, 3], [6, 3], [5, 3]])
    _check_greedy_case("a scripted model with a row that never ends, max_len=4", greedy, model, src_ids, 4,
                       _greedy_reference(_ScriptedModel(scripts), src_ids, 4))
    torch.manual_seed(4)
    real = utils.model.make_model(12, 12, n_layers=1, d_model=16, n_heads=2, d_ff=32, dropout=0.0).eval()
    src_ids = torch.randint(3, 12, (6, 5))
    src_ids[2:, 3:] = PAD_ID
    _check_greedy_case("a small random Transformer", greedy, real, src_ids, 7, _greedy_reference(real, src_ids, 7))


def check_decoder_layer_forward(forward: Callable[..., Tensor]) -> None:
    """Notebook 04: ``forward(layer, y, memory, tgt_mask, memory_mask)`` computes what
    ``layer`` (an ``nn.TransformerDecoderLayer``, batch_first, relu, in eval mode) computes, with our
    masks (True = may attend): ``tgt_mask`` ``(batch, 1, T, T)``, ``memory_mask`` ``(batch, 1, 1, S)``;
    both layer orders (``layer.norm_first``)."""
    torch.manual_seed(4)
    tgt_ids = torch.tensor([[5, 6, 7, 8, 9, 3], [5, 6, 7, 8, 0, 0]])       # 0 = <pad>
    src_ids = torch.tensor([[4, 5, 6, 7, 8], [4, 5, 6, 0, 0]])
    real = tgt_ids != 0
    tgt_mask = padding_mask(tgt_ids, 0) & causal_mask(6)                    # (2, 1, 6, 6)
    memory_mask = padding_mask(src_ids, 0)                                  # (2, 1, 1, 5)
    for norm_first in (False, True):
        order = "pre-LN (norm_first=True)" if norm_first else "post-LN (norm_first=False, the paper)"
        layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first,
                                           dtype=torch.float64).eval()
        with torch.no_grad():
            for name, p in layer.named_parameters():
                if "norm" in name or "bias" in name:
                    p.normal_()                                             # make every norm and bias count
        y, memory = torch.randn(2, 6, 16, dtype=torch.float64), torch.randn(2, 5, 16, dtype=torch.float64)
        with torch.no_grad():
            out = forward(layer, y, memory, tgt_mask, memory_mask)
            ref = layer(y, memory, tgt_mask=~causal_mask(6), tgt_key_padding_mask=~real,
                        memory_key_padding_mask=src_ids == 0)
        assert isinstance(out, Tensor), f"return a torch.Tensor, got {type(out).__name__}"
        assert out.shape == ref.shape, f"{order}: output should be (batch, T, d_model) = {tuple(ref.shape)}, got {tuple(out.shape)}"
        assert not out[real].isnan().any(), f"{order}: the output holds NaN at real target positions"
        with torch.no_grad():
            later = y.clone()
            later[:, 3:] += 1.0                                             # change positions 3, 4, 5 only
            moved = (forward(layer, later, memory, tgt_mask, memory_mask) - out)[:, :3].abs().max().item()
            assert moved < 1e-9, f"{order}: the output at positions 0..2 changed when only positions 3..5 of " \
                                 "the decoder input changed: a position sees the future"
            padded_memory = memory.clone()
            padded_memory[1, 3:] += 5.0                                     # sentence 2's source padding
            moved = (forward(layer, y, padded_memory, tgt_mask, memory_mask) - out)[1].abs().max().item()
            assert moved < 1e-9, f"{order}: changing the memory at padded source positions changed the output"
            no_memory = (forward(layer, y, memory * 0, tgt_mask, memory_mask) - out)[real].abs().max().item()
            assert no_memory > 1e-6, f"{order}: the output does not depend on the memory: is cross-attention used?"
        bad = (out - ref)[real].abs().max().item()
        assert bad < 1e-9, (f"{order}: differs from nn.TransformerDecoderLayer at real target positions: check "
                            "the order of the three sub-layers and where each residual and LayerNorm goes")
