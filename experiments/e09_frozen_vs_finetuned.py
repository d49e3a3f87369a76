"""E09: frozen vs fine-tuned word vectors -- the "TV / telly / television" story.

Claim (the lecture): with a small training set, fine-tuning the pretrained word vectors moves
only the words that occur in training ("tv", "television"); a word seen only at test time
("telly") keeps its old vector, while the classifier has adapted to the moved neighbours, so
unseen words are classified worse than with frozen vectors. With a large training set, which
covers most of the vocabulary, fine-tuning wins.

For each training-set size (a prefix of the training sentences) and seed, the same model is
trained twice, ``embeddings_mode="frozen"`` and ``"finetune"``, and its best dev epoch is
evaluated: entity F1, token accuracy on all dev tokens, and token accuracy on the *unseen* dev
tokens (normalised word absent from that training subset, with a pretrained vector). Then how far
the vectors moved: mean ||E_final - E_pretrained|| for seen and for unseen words, and the distance
of each unseen word to its nearest seen word (nearest in the pretrained space) before and after.

    python experiments/e09_frozen_vs_finetuned.py            # ~4 min on 2 shared CPU cores (18 runs)
    python experiments/e09_frozen_vs_finetuned.py --quick    # ~15 s
    python experiments/e09_frozen_vs_finetuned.py --conll path/to/conll2003 \\
        --embeddings path/to/glove.6B.50d.txt   # 4-7 min (12 runs)

Expected (measured): unseen words move exactly 0 (no gradient ever reaches their rows) while seen
words move ~0.5-1.5; on the smallest set frozen vectors classify unseen tokens better (synthetic
0.84 vs 0.81, CoNLL 0.851 vs 0.842); on full CoNLL fine-tuning wins dev F1 (0.84 vs 0.77), on the
full synthetic set it does not (its vectors already encode every entity type).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, load_corpus, parse_args, prepare, section, write_results  # noqa: E402

from jaxbackprop import data, plots, synthetic, train  # noqa: E402

NAME = "e09_frozen_vs_finetuned"
MODES = ("frozen", "finetune")


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple = (50, 300, 3000)  # training sentences (a prefix of the training split); 3000 = all of it
    epochs: tuple = (60, 12, 5)  # per size: small sets need more passes (frozen still improved at epoch 40 of 40)
    seeds: tuple = (0, 1, 2)
    dev_sentences: int | None = None  # None: the whole dev split
    window: int = 5
    hidden_dim: int = 100
    activation: str = "tanh"
    casing_dim: int = 0  # no casing: only the word vectors (and context) tell the entity type
    optimizer: str = "adam"
    learning_rate: float = 5e-3  # constant: the best dev epoch is selected
    batch_size: int = 32
    dropout: float = 0.0


QUICK = Config(sizes=(40,), epochs=(3,), seeds=(0,), dev_sentences=100, hidden_dim=16)  # two runs: the mechanism only
# CoNLL: 12 runs in 4-7 min; the full training split (14,041 sentences) is the large size
CONLL = Config(sizes=(200, 1000, 14041), epochs=(25, 10, 4), seeds=(0, 1), casing_dim=16, hidden_dim=200, batch_size=256, dropout=0.2)


def train_config(cfg: Config, mode: str, epochs: int, seed: int) -> train.TrainConfig:
    """Every TrainConfig field that matters, pinned; only embeddings_mode, epochs and seed vary."""
    return train.TrainConfig(
        window=cfg.window, hidden_dim=cfg.hidden_dim, activation=cfg.activation, init="xavier", l2=0.0,
        dropout=cfg.dropout, input_dropout=None, word_dropout=0.0, casing_dim=cfg.casing_dim, suffix_len=0, embed_dim=50,
        optimizer=cfg.optimizer, learning_rate=cfg.learning_rate, schedule="constant", decay_epochs=1, decay_rate=0.5,
        epochs=epochs, batch_size=cfg.batch_size, patience=0, seed=seed, grad="manual", impl="pure",
        embeddings_mode=mode, sparse=False, min_count=1, decode="argmax",  # the recorded results were decoded per token
    )  # fmt: skip


def train_best(cfg: train.TrainConfig, prepared: train.Prepared):
    """Train in a temporary run directory; (summary, params of the best dev epoch, model config)."""
    with tempfile.TemporaryDirectory(prefix="jaxbackprop-e09-") as tmp:
        summary = train.train_and_evaluate(cfg, prepared, tmp, progress=False, log=lambda *_: None)
        mcfg = train.model_config(cfg, prepared)
        params, _ = train.load_params(tmp, mcfg)
    return summary, {k: np.asarray(v) for k, v in params.items()}, mcfg


def word_sets(corpus, subset, prepared, held_out=frozenset()) -> dict:
    """Seen words, the dev tokens' words, which of them are unseen and which have a pretrained vector.

    ``held_out``: words to count separately (the synthetic corpus' dev-only synonyms).
    """
    seen = {data.normalize_word(t) for s in subset for t in s.tokens}
    with_vector = set(corpus.pretrained[0]) | {data.normalize_word(w) for w in corpus.pretrained[0]}
    dev_words = [data.normalize_word(t) for toks in prepared.dev.tokens for t in toks]
    unseen = np.array([w not in seen for w in dev_words])
    has_vec = np.array([w in with_vector for w in dev_words])
    held = np.array([w in held_out for w in dev_words])
    ids = prepared.vocab.index
    seen_ids = np.array(sorted(ids[w] for w in seen if w in with_vector and w in ids), int)
    unseen_ids = np.array(sorted({ids[w] for w, u, v in zip(dev_words, unseen, has_vec) if u and v and w in ids}), int)
    return {"seen": len(seen), "dev_tokens": len(dev_words), "unseen_mask": unseen, "vector_mask": has_vec, "held_mask": held,
            "seen_ids": seen_ids, "unseen_ids": unseen_ids}  # fmt: skip


def movement(E0: np.ndarray, E1: np.ndarray, words: dict) -> dict:
    """How far the vectors moved, and how far each unseen word ends up from its nearest seen word."""
    moved = np.linalg.norm(E1 - E0, axis=1)
    s, u = words["seen_ids"], words["unseen_ids"]
    out = {"moved_seen_mean": float(moved[s].mean()) if len(s) else None, "moved_seen_max": float(moved[s].max()) if len(s) else None,
           "moved_unseen_mean": float(moved[u].mean()) if len(u) else None, "moved_unseen_max": float(moved[u].max()) if len(u) else None,
           "pretrained_norm_mean": float(np.linalg.norm(E0[s], axis=1).mean()) if len(s) else None}  # fmt: skip
    if len(s) and len(u):
        # nearest seen word of each unseen word in the pretrained space: |a-b|^2 = |a|^2 - 2ab + |b|^2
        d2 = (E0[u] ** 2).sum(1)[:, None] - 2 * E0[u] @ E0[s].T + (E0[s] ** 2).sum(1)[None, :]
        nn = s[np.argmin(d2, axis=1)]
        out["neighbour_before"] = float(np.linalg.norm(E0[u] - E0[nn], axis=1).mean())
        out["neighbour_after"] = float(np.linalg.norm(E1[u] - E1[nn], axis=1).mean())
    return out


def accuracy(correct: np.ndarray, mask: np.ndarray):
    return float(correct[mask].mean()) if mask.any() else None


def run_one(cfg: Config, mode: str, size: int, epochs: int, seed: int, prepared, words: dict) -> dict:
    tcfg = train_config(cfg, mode, epochs, seed)
    summary, params, mcfg = train_best(tcfg, prepared)
    pred, _ = train.predict_labels(params, prepared.dev, prepared.tags, mcfg, "argmax")
    ok = pred == prepared.dev.labels
    unseen, vec, held = words["unseen_mask"], words["vector_mask"], words["held_mask"]
    row = {"mode": mode, "size": size, "seed": seed, "epochs": epochs, "best_epoch": summary["best_epoch"],
           "dev_f1": summary["dev_f1"], "test_f1": summary.get("test_f1"), "acc_all": float(ok.mean()),
           "acc_unseen": accuracy(ok, unseen & vec), "acc_unseen_any": accuracy(ok, unseen),
           "acc_seen": accuracy(ok, ~unseen), "acc_held_out": accuracy(ok, held),
           **movement(prepared.embeddings, params["E"], words)}  # fmt: skip
    print(f"{NAME}: {size:>6} sentences  {mode:>8}  seed {seed}: dev F1 {row['dev_f1']:.4f} (epoch {row['best_epoch']}), "
          f"acc {row['acc_all']:.4f}, unseen acc {row['acc_unseen'] if row['acc_unseen'] is None else round(row['acc_unseen'], 4)}, "
          f"moved seen {fmt(row['moved_seen_mean'] or 0)} unseen {fmt(row['moved_unseen_mean'] or 0)}")  # fmt: skip
    return row


def aggregate(runs: list, cfg: Config) -> dict:
    """Mean and spread over seeds of each (size, mode)."""
    keys = ("dev_f1", "acc_all", "acc_unseen", "acc_seen", "acc_held_out", "moved_seen_mean", "moved_unseen_mean",
            "moved_unseen_max", "neighbour_before", "neighbour_after")  # fmt: skip
    out = {}
    for size in cfg.sizes:
        for mode in MODES:
            mine = [r for r in runs if r["size"] == size and r["mode"] == mode]
            agg = {}
            for k in keys:
                vals = [r[k] for r in mine if r.get(k) is not None]
                agg[k] = {"mean": float(np.mean(vals)), "min": float(min(vals)), "max": float(max(vals))} if vals else None
            out[f"{size}/{mode}"] = agg
    return out


def judge(agg: dict, cfg: Config) -> dict:
    small, large = cfg.sizes[0], cfg.sizes[-1]

    def m(size, mode, k):
        return agg[f"{size}/{mode}"][k] and agg[f"{size}/{mode}"][k]["mean"]

    fine_small, froz_small = m(small, "finetune", "acc_unseen"), m(small, "frozen", "acc_unseen")
    f1_fine_large, f1_froz_large = m(large, "finetune", "dev_f1"), m(large, "frozen", "dev_f1")
    moved_unseen = [m(s, "finetune", "moved_unseen_max") for s in cfg.sizes]
    return {
        "small_size": small, "large_size": large,
        "small_unseen_frozen": froz_small, "small_unseen_finetune": fine_small,
        "small_frozen_better_on_unseen": fine_small is not None and froz_small > fine_small,
        # every seed of frozen above every seed of fine-tuned: the difference is not seed noise
        "small_unseen_separated": fine_small is not None
        and agg[f"{small}/frozen"]["acc_unseen"]["min"] > agg[f"{small}/finetune"]["acc_unseen"]["max"],
        "large_f1_frozen": f1_froz_large, "large_f1_finetune": f1_fine_large,
        "large_finetune_wins": f1_fine_large > f1_froz_large,
        "small_f1_frozen": m(small, "frozen", "dev_f1"), "small_f1_finetune": m(small, "finetune", "dev_f1"),
        "finetune_f1_wins_at": [s for s in cfg.sizes if m(s, "finetune", "dev_f1") > m(s, "frozen", "dev_f1")],
        "frozen_unseen_wins_at": [s for s in cfg.sizes if (m(s, "frozen", "acc_unseen") or 0) > (m(s, "finetune", "acc_unseen") or 0)],
        "unseen_rows_never_move": all(v == 0.0 for v in moved_unseen if v is not None),
        "seen_rows_move": all((m(s, "finetune", "moved_seen_mean") or 0) > 0 for s in cfg.sizes),
    }  # fmt: skip


def verdict_of(j: dict) -> str:
    parts = (j["small_frozen_better_on_unseen"], j["large_finetune_wins"])
    return "supported" if all(parts) else ("partly supported" if any(parts) else "not supported")


def plot(result: dict, out: Path) -> list:
    agg, sizes = result["aggregate"], result["config"]["sizes"]
    colors = {"frozen": "tab:blue", "finetune": "tab:red"}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, key, title in zip(axes, ("dev_f1", "acc_all", "acc_unseen"),
                              ("dev entity F1", "token accuracy, all dev tokens", "token accuracy, unseen dev tokens")):  # fmt: skip
        for mode in MODES:
            stats = [agg[f"{s}/{mode}"][key] for s in sizes]
            xs = [s for s, st in zip(sizes, stats) if st]
            mean = np.array([st["mean"] for st in stats if st])
            # clipped at 0: the mean of equal floats can land an ulp outside min..max
            err = np.maximum(np.array([[st["mean"] - st["min"], st["max"] - st["mean"]] for st in stats if st]).T, 0.0)
            ax.errorbar(xs, mean, yerr=err, fmt="o-", capsize=3, color=colors[mode], label=mode)
        ax.set(xscale="log", xlabel="training sentences", title=title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"frozen vs fine-tuned word vectors ({result['corpus_short']}); mean over seeds, bars: min..max")
    plots.save(fig, out / "frozen_vs_finetuned.png")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    fine = [agg[f"{s}/finetune"] for s in sizes]
    ax1.plot(sizes, [f["moved_seen_mean"]["mean"] for f in fine], "o-", label="seen words")
    ax1.plot(sizes, [f["moved_unseen_mean"]["mean"] if f["moved_unseen_mean"] else np.nan for f in fine], "s-", label="unseen dev words")
    ax1.set(xscale="log", xlabel="training sentences", ylabel="mean ||E_final - E_pretrained||", title="how far fine-tuning moved the vectors")
    ax2.plot(sizes, [f["neighbour_before"]["mean"] if f["neighbour_before"] else np.nan for f in fine], "o--", color="0.4", label="pretrained")
    ax2.plot(sizes, [f["neighbour_after"]["mean"] if f["neighbour_after"] else np.nan for f in fine], "o-", color="tab:red", label="after fine-tuning")
    ax2.set(xscale="log", xlabel="training sentences", ylabel="mean distance", title="unseen word to its nearest seen word")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    plots.save(fig, out / "vector_movement.png")
    return ["frozen_vs_finetuned.png", "vector_movement.png"]


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    cfg = QUICK if args.quick else (CONLL if args.conll else Config())
    corpus = load_corpus(args)
    if corpus.pretrained is None:
        raise SystemExit("error: this experiment compares pretrained vectors frozen vs fine-tuned: pass --embeddings with --conll")
    corpus = corpus._replace(dev=corpus.dev[: cfg.dev_sentences])
    runs, splits = [], {}
    for size, epochs in zip(cfg.sizes, cfg.epochs):
        subset = corpus.train[:size]
        prepared = prepare(corpus, train_config(cfg, "finetune", epochs, cfg.seeds[0]), subset)
        words = word_sets(corpus, subset, prepared, frozenset() if args.conll else synthetic.held_out_words())
        unseen, vec = words["unseen_mask"], words["vector_mask"]
        splits[size] = {"train_sentences": len(subset), "train_tokens": len(prepared.train.windows), "seen_words": words["seen"],
                        "vocab_size": len(prepared.vocab), "vocab_with_vector": prepared.coverage.get("found"),
                        "seen_with_vector": len(words["seen_ids"]), "dev_tokens": words["dev_tokens"], "unseen_tokens": int(unseen.sum()),
                        "unseen_tokens_with_vector": int((unseen & vec).sum()), "unseen_word_types_with_vector": len(words["unseen_ids"]),
                        "held_out_tokens": int(words["held_mask"].sum())}  # fmt: skip
        for seed in cfg.seeds:
            for mode in MODES:
                runs.append(run_one(cfg, mode, size, epochs, seed, prepared, words))
    agg = aggregate(runs, cfg)
    j = judge(agg, cfg)
    verdict = verdict_of(j)
    result = {"name": NAME, "config": dataclasses.asdict(cfg), "train_config": dataclasses.asdict(train_config(cfg, "finetune", cfg.epochs[0], cfg.seeds[0])),
              "corpus": corpus.source, "corpus_short": "CoNLL-2003" if args.conll else "synthetic", "splits": splits,
              "runs": runs, "aggregate": agg, "judgement": j, "verdict": verdict,
              "claim": "small data: fine-tuning hurts words unseen in training; large data: fine-tuning wins"}  # fmt: skip
    files = plot(result, args.out)
    md = section(number=9, title=f"Frozen vs fine-tuned word vectors ({result['corpus_short']})",
                 claim="with a small training set, fine-tuning moves only the word vectors seen in training, so words seen "
                       "only at test time (TV / telly / television) are classified worse than with frozen vectors; with a "
                       "large training set fine-tuning wins.",
                 measured=_measured(result), verdict=verdict, why=_why(result), plots=files, command=args.command)  # fmt: skip
    return write_results(args, result, md, started)


def _pm(stat, digits=3) -> str:
    if stat is None:
        return "-"
    spread = f" ({fmt(stat['min'], digits)}..{fmt(stat['max'], digits)})" if stat["max"] > stat["min"] else ""
    return f"{fmt(stat['mean'], digits)}{spread}"


def _measured(result) -> list:
    cfg, agg = result["config"], result["aggregate"]
    tc = result["train_config"]
    lines = [
        (f"Run: {result['corpus']}; training sets of {', '.join(str(s) for s in cfg['sizes'])} sentences (prefixes of the "
         f"training split) for {', '.join(str(e) for e in cfg['epochs'])} epochs, seeds {list(cfg['seeds'])}; window "
         f"{cfg['window']}, H = {cfg['hidden_dim']} ({cfg['activation']}), casing {cfg['casing_dim']}, {cfg['optimizer']} "
         f"{cfg['learning_rate']:g} constant, batch {cfg['batch_size']}, dropout {cfg['dropout']}, min_count {tc['min_count']}; "
         f"the best dev epoch of each run is evaluated. \"Unseen\" = dev tokens whose normalised word does not occur in "
         f"that training subset; their accuracy is taken over those with a pretrained vector."),
    ]  # fmt: skip
    head = ["| train sentences | unseen dev tokens (with vector) | mode | dev F1 | acc, all tokens | acc, unseen | moved: seen | moved: unseen | unseen to nearest seen: before -> after |",
            "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    rows = []
    for s in cfg["sizes"]:
        sp = result["splits"][s]
        for mode in MODES:
            a = agg[f"{s}/{mode}"]
            rows.append(f"| {s} | {sp['unseen_tokens']} of {sp['dev_tokens']} ({sp['unseen_tokens_with_vector']}) | {mode} | "
                        f"{_pm(a['dev_f1'], 4)} | {_pm(a['acc_all'], 4)} | {_pm(a['acc_unseen'], 4)} | {_pm(a['moved_seen_mean'])} | "
                        f"{_pm(a['moved_unseen_mean'])} | {_pm(a['neighbour_before'])} -> {_pm(a['neighbour_after'])} |")  # fmt: skip
    lines.append("Mean over seeds (min..max):\n\n  " + "\n  ".join(head + rows) + "\n")
    small, large = cfg["sizes"][0], cfg["sizes"][-1]
    if result["corpus_short"] == "synthetic":
        held = [f"{mode} {_pm(agg[f'{size}/{mode}']['acc_held_out'], 4)}" for size in (small, large) for mode in MODES]
        lines.append(
            f"The held-out synonyms ({', '.join(sorted(synthetic.held_out_words()))}: in no training split, each close to "
            f"its group in the synthetic vectors), token accuracy at {small} sentences: {held[0]}, {held[1]}; at {large}: "
            f"{held[2]}, {held[3]}."
        )  # fmt: skip
    fine, frozen = [r for r in result["runs"] if r["mode"] == "finetune"], [r for r in result["runs"] if r["mode"] == "frozen"]
    sp = [result["splits"][s] for s in cfg["sizes"]]
    lines.append(
        "Training words with a pretrained vector (the rest start random, and stay random when frozen): "
        + ", ".join(f"{x['seen_with_vector']} of {x['seen_words']} at {s}" for s, x in zip(cfg["sizes"], sp)) + "."
    )
    lines.append(
        f"For scale: seen words' pretrained vectors are {fmt(result['runs'][0]['pretrained_norm_mean'] or 0)} long on average. "
        f"Largest move of any unseen row under fine-tuning: {max((r['moved_unseen_max'] or 0) for r in fine):g}; largest "
        f"move of any row with frozen vectors: {max(max(r['moved_seen_max'] or 0, r['moved_unseen_max'] or 0) for r in frozen):g}."
    )  # fmt: skip
    return lines


def _why(result) -> str:
    j = result["judgement"]
    small = (
        f"At {j['small_size']} sentences frozen vectors classify the unseen tokens better ({fmt(j['small_unseen_frozen'], 4)} vs "
        f"{fmt(j['small_unseen_finetune'], 4)} fine-tuned, mean over seeds; "
        f"{'every frozen seed above every fine-tuned one' if j['small_unseen_separated'] else 'the seed ranges overlap'})"
        if j["small_frozen_better_on_unseen"]
        else f"At {j['small_size']} sentences fine-tuning does NOT hurt the unseen tokens ({fmt(j['small_unseen_finetune'] or 0, 4)} "
             f"fine-tuned vs {fmt(j['small_unseen_frozen'] or 0, 4)} frozen)"
    )  # fmt: skip
    mech = (
        ". Fine-tuning moved the seen words' vectors while no unseen row moved at all (no gradient ever reaches them), so "
        "each unseen word ends up farther from its nearest seen word than it started." if j["unseen_rows_never_move"] and j["seen_rows_move"]
        else ". Unexpectedly, unseen rows moved under fine-tuning, or seen rows did not."
    )
    large = (
        f" At {j['large_size']} sentences fine-tuning wins on dev F1 ({fmt(j['large_f1_finetune'], 4)} vs {fmt(j['large_f1_frozen'], 4)})."
        if j["large_finetune_wins"]
        else f" At {j['large_size']} sentences fine-tuning does NOT win on dev F1 ({fmt(j['large_f1_finetune'], 4)} vs "
             f"{fmt(j['large_f1_frozen'], 4)} frozen)"
             + (": the synthetic vectors were built so that each synonym group is one entity type, so they are already the "
                "ideal features, and the held-out words stay unseen at every size." if result["corpus_short"] == "synthetic" else ".")
    )  # fmt: skip
    sizes = result["config"]["sizes"]
    summary = (f" Of the sizes {_sizes(sizes)}, fine-tuning has the higher mean dev F1 at {_sizes(j['finetune_f1_wins_at'])}, "
               f"and frozen vectors classify the unseen tokens better at {_sizes(j['frozen_unseen_wins_at'])}.")  # fmt: skip
    return small + mech + large + (summary if len(sizes) > 2 else "")


def _sizes(sizes) -> str:
    return ", ".join(str(s) for s in sizes) or "none"


if __name__ == "__main__":
    main(sys.argv[1:])
