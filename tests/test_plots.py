import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from utils.plots import plot_alignment, plot_attention, plot_attention_grid, plot_bleu_by_length  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def softmax_rows(*shape, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen).softmax(-1)


def tick_texts(ticks):
    return [t.get_text() for t in ticks]


# -- plot_attention ---------------------------------------------------------------------------
def test_plot_attention_draws_the_weights_with_labels():
    w = softmax_rows(3, 4)
    ax = plot_attention(w, ["the", "cat", "sat", "."], ["a", "b", "c"], title="head 0")
    assert isinstance(ax, Axes)
    np.testing.assert_allclose(ax.images[0].get_array(), w.numpy())
    assert ax.images[0].get_clim() == (0.0, 1.0), "the colour scale runs from 0 to 1 by default"
    assert tick_texts(ax.get_xticklabels()) == ["the", "cat", "sat", "."]
    assert tick_texts(ax.get_yticklabels()) == ["a", "b", "c"]
    assert ax.get_xticklabels()[0].get_rotation() == 90, "words are written vertically"
    assert ax.get_title() == "head 0"


def test_plot_attention_accepts_numpy_grad_tensors_and_an_axes():
    fig, ax = plt.subplots()
    w = softmax_rows(2, 2).requires_grad_()
    assert plot_attention(w, list("ab"), list("xy"), ax, vmax=0.5, colorbar=True) is ax
    assert ax.get_xticklabels()[0].get_rotation() == 0, "single characters stay upright"
    assert ax.images[0].get_clim() == (0.0, 0.5) and len(fig.axes) == 2, "the colour bar is a second axes"
    arr = np.eye(3)
    np.testing.assert_array_equal(plot_attention(arr, None, None).images[0].get_array(), arr)


@pytest.mark.parametrize("shape", [(4,), (2, 3, 4)])
def test_plot_attention_rejects_non_2d(shape):
    with pytest.raises(ValueError, match=r"must be 2-D \(q_len, k_len\).*got shape"):
        plot_attention(np.zeros(shape), None, None)


def test_plot_attention_rejects_wrong_label_counts():
    with pytest.raises(ValueError, match=r"x_labels has 3 labels but the weights of shape \(2, 4\) have 4 keys"):
        plot_attention(np.zeros((2, 4)), list("abc"), list("xy"))
    with pytest.raises(ValueError, match=r"y_labels has 1 labels .* have 2 queries"):
        plot_attention(np.zeros((2, 4)), list("abcd"), ["x"])
    with pytest.raises(ValueError, match="vmax must be positive"):
        plot_attention(np.zeros((2, 2)), None, None, vmax=0)


# -- plot_attention_grid ----------------------------------------------------------------------
def test_plot_attention_grid_from_a_list_of_layers():
    maps = [softmax_rows(3, 4, 5, seed=i) for i in range(2)]  # 2 layers, 3 heads, q=4, k=5
    keys, queries = ["k0", "k1", "k2", "k3", "k4"], list("abcd")
    fig = plot_attention_grid(maps, keys, queries, title="encoder")
    assert isinstance(fig, Figure) and len(fig.axes) == 2 * 3
    assert [ax.get_title() for ax in fig.axes] == [f"layer {i} · head {h}" for i in range(2) for h in range(3)]
    for n, ax in enumerate(fig.axes):
        i, h = divmod(n, 3)
        np.testing.assert_allclose(ax.images[0].get_array(), maps[i][h].numpy())
        assert tick_texts(ax.get_xticklabels()) == (keys if i == 1 else []), "keys only on the bottom row"
        assert tick_texts(ax.get_yticklabels()) == (queries if h == 0 else []), "queries only on the left column"
    assert fig._suptitle.get_text() == "encoder"


def test_plot_attention_grid_from_a_4d_array_with_max_heads():
    maps = softmax_rows(3, 4, 2, 2).numpy()
    fig = plot_attention_grid(maps, max_heads=2)
    assert len(fig.axes) == 3 * 2
    assert fig.axes[-1].get_title() == "layer 2 · head 1"
    np.testing.assert_allclose(fig.axes[-1].images[0].get_array(), maps[2, 1])
    assert all(tick_texts(ax.get_xticklabels()) == [] for ax in fig.axes), "no labels given, none drawn"


def test_plot_attention_grid_rejects_bad_maps():
    with pytest.raises(ValueError, match=r"still has the batch dimension"):
        plot_attention_grid([torch.zeros(2, 4, 3, 3)])
    with pytest.raises(ValueError, match=r"maps\[1\] must be \(heads, q_len, k_len\)"):
        plot_attention_grid([torch.zeros(4, 3, 3), torch.zeros(3, 3)])
    with pytest.raises(ValueError, match=r"same shape.*maps\[1\] is \(4, 3, 2\)"):
        plot_attention_grid([torch.zeros(4, 3, 3), torch.zeros(4, 3, 2)])
    with pytest.raises(ValueError, match=r"\(layers, heads, q_len, k_len\) array; got .* shape \(4, 3, 3\)"):
        plot_attention_grid(np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="maps is empty"):
        plot_attention_grid([])
    with pytest.raises(ValueError, match="x_labels has 2 labels"):
        plot_attention_grid(np.zeros((1, 1, 3, 3)), list("ab"), list("abc"))
    with pytest.raises(ValueError, match="max_heads must be a positive int"):
        plot_attention_grid(np.zeros((1, 1, 3, 3)), max_heads=0)
    assert plt.get_fignums() == [], "no figure is left behind by a rejected call"


# -- plot_alignment ---------------------------------------------------------------------------
def test_plot_alignment_marks_each_rows_argmax():
    cross = softmax_rows(4, 5, seed=3) * 3  # peaked rows
    src, tgt = ["ein", "Hund", "läuft", ".", "<eos>"], ["a", "dog", "runs", "."]
    ax = plot_alignment(cross, src, tgt, title="alignment")
    np.testing.assert_allclose(ax.images[0].get_array(), cross.numpy())
    assert tick_texts(ax.get_xticklabels()) == src and tick_texts(ax.get_yticklabels()) == tgt
    (dots,) = ax.lines
    np.testing.assert_array_equal(dots.get_xdata(), cross.argmax(-1).numpy())
    np.testing.assert_array_equal(dots.get_ydata(), np.arange(4))
    assert ax.get_xlabel() == "source" and ax.get_ylabel() == "target" and ax.get_title() == "alignment"


def test_plot_alignment_averages_heads_and_can_skip_markers():
    cross = softmax_rows(4, 3, 5, seed=1)  # (heads, tgt, src)
    _, ax = plt.subplots()
    assert plot_alignment(cross, list("abcde"), list("xyz"), ax, mark_max=False) is ax
    np.testing.assert_allclose(ax.images[0].get_array(), cross.mean(0).numpy(), rtol=1e-6)
    assert len(ax.lines) == 0, "mark_max=False draws no dots"
    mean = cross.mean(0)
    ax2 = plot_alignment(cross, list("abcde"), list("xyz"))
    np.testing.assert_array_equal(ax2.lines[0].get_xdata(), mean.argmax(-1).numpy())


def test_plot_alignment_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(tgt_len, src_len\) or \(heads, tgt_len, src_len\).*shape \(1, 2, 3, 4\)"):
        plot_alignment(np.zeros((1, 2, 3, 4)), list("abcd"), list("xyz"))
    with pytest.raises(ValueError, match=r"src_tokens has 3 labels but the weights of shape \(2, 4\)"):
        plot_alignment(np.zeros((2, 4)), list("abc"), list("xy"))
    with pytest.raises(ValueError, match=r"tgt_tokens has 3 labels .* have 2 queries"):
        plot_alignment(np.zeros((5, 2, 4)), list("abcd"), list("xyz"))


# -- plot_bleu_by_length ----------------------------------------------------------------------
def test_plot_bleu_by_length_bars_and_counts():
    buckets, scores, counts = ["1-10", "11-20", "21+"], [41.5, 36.25, 28.0], [412, 530, 58]
    ax = plot_bleu_by_length(buckets, scores, counts, title="BLEU by length")
    assert isinstance(ax, Axes)
    assert [p.get_height() for p in ax.patches] == scores
    assert tick_texts(ax.get_xticklabels()) == buckets
    assert [t.get_text() for t in ax.texts] == ["n=412", "n=530", "n=58"]
    assert ax.get_ylim()[1] > max(scores), "room above the tallest bar for its count"
    assert ax.get_ylabel() == "BLEU" and ax.get_title() == "BLEU by length"


def test_plot_bleu_by_length_rejects_unequal_or_empty():
    with pytest.raises(ValueError, match="one entry per bucket, got lengths 2, 3 and 2"):
        plot_bleu_by_length(["a", "b"], [1.0, 2.0, 3.0], [1, 2])
    with pytest.raises(ValueError, match="no buckets"):
        plot_bleu_by_length([], [], [])


# -- the grid's colour bar and scale; the showcase ----------------------------------------------
def test_plot_attention_grid_colour_bar_and_square_root_scale():
    maps = np.full((2, 3, 4, 4), 0.25)                                     # diffuse heads: every weight 1/4
    fig = plot_attention_grid(maps, colorbar=True, gamma=0.5)
    assert len(fig.axes) == 2 * 3 + 1, "the panels, then one colour bar"
    image = fig.axes[0].images[0]
    assert image.norm(0.25) == pytest.approx(0.5), "w ** 0.5: a weight of 1/4 is drawn half-way up the scale, not black"
    assert image.norm.vmin == 0 and image.norm.vmax == 1
    linear = plot_attention_grid(maps)
    assert len(linear.axes) == 2 * 3 and linear.axes[0].images[0].norm(0.25) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="gamma"):
        plot_attention_grid(maps, gamma=0)
    plt.close("all")


def test_showcase_sentence_follows_its_rule():
    from utils.plots import showcase_sentence

    sources = ["kurz", "ein Mann mit einem Hut geht über die Straße", "eine Frau mit einem Hund läuft im Park ."]
    refs = ["short", "a man in a hat crosses the street", "a woman with a dog runs in the park ."]
    hyps = ["short", "a man crosses a road", "a woman with a dog runs in the park ."]
    assert showcase_sentence(sources, hyps, refs) == 2, "the best sentence BLEU among 8–14 words"
    assert showcase_sentence(sources, ["x", "a man in a hat crosses the street", "x"], refs) == 1
    with pytest.raises(ValueError, match="no source"):
        showcase_sentence(sources, hyps, refs, min_words=20, max_words=30)
    with pytest.raises(ValueError, match="one entry per sentence"):
        showcase_sentence(sources, hyps[:2], refs)


def test_plot_showcase_draws_three_captioned_figures():
    from utils.plots import plot_showcase, token_label

    assert [token_label(t) for t in ("▁Hund", "en", "<eos>")] == ["Hund", "·en", "<eos>"]
    layers, heads, S, T = 2, 3, 5, 4
    maps = {"encoder_self": [torch.full((1, heads, S, S), 1 / S)] * layers,
            "decoder_self": [torch.tril(torch.ones(T, T)).div(torch.arange(1, T + 1)[:, None]).expand(1, heads, T, T)] * layers,
            "cross": [torch.softmax(torch.randn(1, heads, T, S), -1)] * layers}
    figs = plot_showcase(maps, list("abcde"), list("wxyz"), list("xyz."), "model: toy, test BLEU 0.0")
    assert set(figs) == {"alignment", "encoder_grid", "decoder_grid"}
    assert len(figs["alignment"].axes) == layers and len(figs["encoder_grid"].axes) == layers * heads + 1
    assert all(f._supxlabel.get_text() == "model: toy, test BLEU 0.0" for f in figs.values())
    with pytest.raises(ValueError, match="cross"):
        plot_showcase({"cross": maps["cross"]}, list("abcde"), list("wxyz"), list("xyz."), "c")
    plt.close("all")
