"""The showcase: the attention pictures a visitor sees first, drawn from a trained translator.

    python scripts/showcase.py multi30k_2h --force          # redraw the README's pictures (checkpoints/multi30k_2h.best.pt)
    python scripts/showcase.py multi30k_2h --checkpoint checkpoints/05_translator.pt --prefix /tmp/short_ \
        --json /tmp/short.json
    python scripts/showcase.py multi30k_2h --quick --prefix /tmp/q_ --json /tmp/q.json   # 200 sentences, no test BLEU

What it does, with the model in ``--checkpoint`` (default ``checkpoints/<recipe>.best.pt``, the weights
``scripts/choose.py`` chose, with the decoding it chose on validation; any other checkpoint is
decoded with beam 4 and alpha 0.6 unless ``--beam`` / ``--alpha`` say otherwise):

1. translates the **validation** set with that decoder and picks the sentence
   by a stated rule, ``utils.plots.showcase_sentence``: among sources of 8 to 14 words, the highest
   sentence BLEU against its reference (the rule, not a person, chooses; the test set is not looked at);
2. translates the **test** set once with the same decoder and computes its corpus BLEU (sacreBLEU
   13a, cased), which captions every figure together with the checkpoint's name and size;
3. runs the model once on that sentence and its translation (``model.attention_maps()``) and draws
   ``utils.plots.plot_showcase``: the cross-attention alignment of every layer, and the encoder's and
   decoder's self-attention grids (colour bar, square-root colour scale);
4. writes ``figures/06_showcase_alignment.png``, ``06_showcase_encoder_grid.png``,
   ``06_showcase_decoder_grid.png`` (``--prefix`` changes ``figures/06_showcase_``) and what was
   chosen, with the scores, to ``results/<recipe>/showcase.json`` (``--json``), in the report schema
   of ``recipes/__init__.py``. Default paths belong to this checkout; a relative ``--prefix`` or
   ``--json`` is taken from the working folder. An existing report or picture is replaced only with
   ``--force``; both are checked writable, and every sentence against the model's positional table,
   before any decoding.

Notebook 06 draws the same figures (the same functions) from whichever model it has and says which.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import sacrebleu  # noqa: E402
import torch  # noqa: E402

from utils.checkpoint import check_writable, load_checkpoint  # noqa: E402
from utils.data import load_multi30k  # noqa: E402
from utils.decode import translate  # noqa: E402
from utils.model import Transformer, check_translator, count_parameters  # noqa: E402
from utils.plots import plot_showcase, showcase_sentence, token_label  # noqa: E402
from utils.tokenize import BOS_ID, tokenizer_from_dict  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]  # the checkout
sys.path.insert(0, str(REPO_ROOT))                # this checkout's recipes/, never another's
import recipes  # noqa: E402

#: The pictures ``utils.plots.plot_showcase`` draws, written to PREFIX + name + ``.png``.
FIGURES = ("alignment", "encoder_grid", "decoder_grid")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="default checkpoints/<recipe>.best.pt")
    parser.add_argument("--beam", type=int, default=None,
                        help="beam size (1 = greedy; default: the checkpoint's chosen decoding, else 4)")
    parser.add_argument("--alpha", type=float, default=None,
                        help="length penalty alpha (default: the checkpoint's chosen decoding, else 0.6)")
    parser.add_argument("--prefix", default=str(REPO_ROOT / "figures" / "06_showcase_"),
                        help="where the figures go: PREFIX + name + .png (default figures/06_showcase_)")
    parser.add_argument("--json", type=Path, default=None,
                        help="the report: what was chosen, and the scores (default results/<recipe>/showcase.json)")
    parser.add_argument("--quick", action="store_true", help="200 validation sentences, no test BLEU (a smoke run)")
    parser.add_argument("recipe", help="the translator recipe whose chosen model is drawn (e.g. multi30k_2h)")
    parser.add_argument("--force", action="store_true", help="replace a report or pictures that are already there")
    args = parser.parse_args(argv)
    if args.beam is not None and args.beam < 1:
        parser.error(f"--beam must be ≥ 1, got {args.beam}")
    if args.alpha is not None and not (math.isfinite(args.alpha) and args.alpha >= 0):
        parser.error(f"--alpha must be a number ≥ 0, got {args.alpha}")
    if args.recipe not in recipes.names():
        parser.error(f"no recipe named {args.recipe!r}; the recipes are: {', '.join(recipes.names())}")
    out_json = recipes.results_dir(args.recipe) / "showcase.json" if args.json is None else args.json
    recipes.refuse_overwrite(out_json, args.force, flag="--json")
    for key in FIGURES:                                    # the README's pictures are committed too
        recipes.refuse_overwrite(Path(f"{args.prefix}{key}.png"), args.force, "figure", "--prefix")
    check_writable(out_json, "--json report")              # fail now, not after the decoding
    for key in FIGURES:
        check_writable(Path(f"{args.prefix}{key}.png"), "--prefix figure")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    path = recipes.checkpoint_path(args.recipe, "best") if args.checkpoint is None else args.checkpoint
    if not path.is_file():
        raise SystemExit(f"no checkpoint at {path}: make one with python scripts/train_translator.py {args.recipe} "
                         f"and python scripts/choose.py {args.recipe} (docs/results.md), or pass --checkpoint "
                         f"checkpoints/05_translator.pt (notebook 05's short run)")
    try:
        saved = check_translator(load_checkpoint(path), path)                # a translator's, before any work
    except ValueError as err:
        raise SystemExit(str(err)) from None
    if saved.get("tokenizer") is None:
        raise SystemExit(f"{path} holds no tokenizer (saved without tokenizer=...): pass a checkpoint that "
                         "scripts/choose.py or scripts/train_translator.py wrote")
    chosen = saved.get("decoding", {"beam": 4, "alpha": 0.6})           # what scripts/choose.py chose
    args.beam = chosen["beam"] if args.beam is None else args.beam
    args.alpha = chosen["alpha"] if args.alpha is None else args.alpha
    if args.beam < 1 or not (math.isfinite(args.alpha) and args.alpha >= 0):
        raise SystemExit(f"--beam must be ≥ 1 and --alpha ≥ 0, got {args.beam} and {args.alpha}")
    model = Transformer.load(path).eval()
    tok = tokenizer_from_dict(saved["tokenizer"])
    ds = load_multi30k()
    valid_src, valid_ref = list(ds["validation"]["de"]), list(ds["validation"]["en"])
    if args.quick:
        valid_src, valid_ref = valid_src[:200], valid_ref[:200]
    decoder = "greedy" if args.beam == 1 else f"beam {args.beam}, alpha {args.alpha:g}"
    longest = max(len(ids) for ids in tok.encode_batch(valid_src + ([] if args.quick else list(ds["test"]["de"])),
                                                        add_special=True))
    if longest > model.config["max_len"]:                      # fail now, not after decoding the others
        raise SystemExit(f"a sentence of {longest} tokens is longer than the positional table of {path} "
                         f"(max_len {model.config['max_len']}): it cannot be translated; retrain with a larger "
                         "--max-len or --vocab")

    t0 = time.perf_counter()
    batch = 100                                               # finished sentences leave the batch: big batches waste no steps
    valid_hyp = translate(model, valid_src, tok, beam_size=args.beam, length_penalty_alpha=args.alpha, batch_size=batch)
    pick = showcase_sentence(valid_src, valid_hyp, valid_ref)
    sentence_bleu = sacrebleu.sentence_bleu(valid_hyp[pick], [valid_ref[pick]]).score
    test_bleu = None
    if not args.quick:
        test_src, test_ref = list(ds["test"]["de"]), list(ds["test"]["en"])
        test_bleu = sacrebleu.corpus_bleu(translate(model, test_src, tok, beam_size=args.beam, batch_size=batch,
                                                    length_penalty_alpha=args.alpha), [test_ref]).score
    name = path.name
    size = f"{count_parameters(model) / 1e6:.1f}M parameters"
    caption = (f"model: {name} ({size}), test BLEU {test_bleu:.2f} ({decoder}, sacreBLEU 13a cased); "
               if test_bleu is not None else f"model: {name} ({size}), test BLEU not measured (--quick); ")
    caption += f"validation sentence {pick}, chosen by rule: highest sentence BLEU among 8–14 words"

    src_ids = tok.encode(valid_src[pick], add_special=True)
    out_ids = translate(model, [src_ids], beam_size=args.beam, length_penalty_alpha=args.alpha, output="ids")[0]
    src = torch.tensor([src_ids])                                                    # (1, S)
    tgt_in = torch.tensor([[BOS_ID] + out_ids[:-1]])                                 # (1, T): <bos> + translation
    with torch.no_grad(), model.attention_maps() as maps:
        model(src, tgt_in)
    figs = plot_showcase(maps, [token_label(tok.id_to_token[i]) for i in src_ids],
                         [token_label(tok.id_to_token[i]) for i in tgt_in[0].tolist()],
                         [token_label(tok.id_to_token[i]) for i in out_ids], caption)
    written = []
    for key, fig in figs.items():
        out = Path(f"{args.prefix}{key}.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110, bbox_inches="tight", metadata={"Software": None})
        written.append(recipes.shown(out))
    metrics = {"parameters": count_parameters(model), "test_bleu": test_bleu, "validation_index": pick,
               "sentence_bleu": sentence_bleu, "seconds": round(time.perf_counter() - t0, 1)}
    details = {"checkpoint": name, "decoder": decoder, "source": valid_src[pick], "translation": valid_hyp[pick],
               "reference": valid_ref[pick], "figures": written, "caption": caption}
    settings = {"checkpoint": recipes.shown(path), "beam": args.beam, "alpha": args.alpha, "quick": args.quick,
                "prefix": args.prefix if not Path(args.prefix).is_absolute() else recipes.shown(Path(args.prefix)),
                "json": recipes.shown(out_json)}
    record = recipes.report(args.recipe, "showcase",
                            " ".join(["python", "scripts/showcase.py", *(sys.argv[1:] if argv is None else argv)]),
                            settings, metrics, details=details, environment={"torch": torch.__version__})
    recipes.write_report(out_json, record)
    print(json.dumps(record, indent=2, ensure_ascii=False))
    return record


if __name__ == "__main__":
    main()
