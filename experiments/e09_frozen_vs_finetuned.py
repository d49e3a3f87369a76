"""E09: frozen vs fine-tuned word vectors -- small data: fine-tuning hurts unseen words; large: it wins.

Settings, command and expected result: configs/e09.py; the prose: templates/e09.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_corpus, parse_args, prepare, result_head, train_run, verdict_of, write_result
from configs import base, e09
from figures import e09 as figure
from unseen_words import movement, word_sets

from jaxbackprop import synthetic, train
from jaxbackprop.evaluate import predict_labels

NAME = "e09_frozen_vs_finetuned"
CLAIM = "small data: fine-tuning hurts words unseen in training; large data: fine-tuning wins"
MODES = ("frozen", "finetune")
AGGREGATED = ("dev_f1", "acc_all", "acc_unseen", "acc_seen", "acc_held_out", "moved_seen_mean", "moved_unseen_mean")
AGGREGATED += ("moved_unseen_max", "neighbour_before", "neighbour_after")


def run_one(training: train.TrainConfig, prepared, words: dict) -> dict:
    run = train_run(training, prepared)
    pred, _ = predict_labels(run.params, prepared.dev, prepared.tags, run.model_cfg, "argmax")
    ok, unseen, vec = pred == prepared.dev.labels, words["unseen_mask"], words["vector_mask"]
    acc = lambda mask: float(ok[mask].mean()) if mask.any() else None  # noqa: E731
    row = {"mode": training.embeddings_mode, "seed": training.seed, "epochs": training.epochs}
    row |= {
        "best_epoch": run.summary["best_epoch"],
        "dev_f1": run.summary["dev_f1"],
        "test_f1": run.summary.get("test_f1"),
    }
    row |= {"acc_all": float(ok.mean()), "acc_unseen": acc(unseen & vec)}
    row |= {"acc_seen": acc(~unseen), "acc_held_out": acc(words["held_mask"])}
    return row | movement(prepared.embeddings, np.asarray(run.params["E"]), words)


def aggregate(runs: list, config: e09.Config) -> list:
    """Mean and range over seeds of each (size, mode), in the order of the sizes."""
    out = []
    for size in config.sizes:
        for mode in MODES:
            mine = [r for r in runs if r["size"] == size and r["mode"] == mode]
            stats = {k: [r[k] for r in mine if r.get(k) is not None] for k in AGGREGATED}
            stats = {
                k: {"mean": float(np.mean(v)), "min": min(v), "max": max(v)} if v else None for k, v in stats.items()
            }
            out.append({"size": size, "mode": mode, **stats})
    return out


def judge(agg: list, config: e09.Config) -> dict:
    by = {(a["size"], a["mode"]): a for a in agg}
    m = lambda size, mode, k: by[size, mode][k] and by[size, mode][k]["mean"]  # noqa: E731 (None: nothing measured)
    small, large = config.sizes[0], config.sizes[-1]
    fine, froz = m(small, "finetune", "acc_unseen"), m(small, "frozen", "acc_unseen")
    return {
        "small_size": small,
        "large_size": large,
        "small_unseen_frozen": froz,
        "small_unseen_finetune": fine,
        "small_frozen_better_on_unseen": fine is not None and froz > fine,
        # every seed of frozen above every seed of fine-tuned: the difference is not seed noise
        "small_unseen_separated": fine is not None
        and by[small, "frozen"]["acc_unseen"]["min"] > by[small, "finetune"]["acc_unseen"]["max"],
        "large_f1_frozen": m(large, "frozen", "dev_f1"),
        "large_f1_finetune": m(large, "finetune", "dev_f1"),
        "large_finetune_wins": m(large, "finetune", "dev_f1") > m(large, "frozen", "dev_f1"),
        "finetune_f1_wins_at": [s for s in config.sizes if m(s, "finetune", "dev_f1") > m(s, "frozen", "dev_f1")],
        "frozen_unseen_wins_at": [
            s for s in config.sizes if (m(s, "frozen", "acc_unseen") or 0) > (m(s, "finetune", "acc_unseen") or 0)
        ],
        "unseen_rows_never_move": all(m(s, "finetune", "moved_unseen_max") in (0.0, None) for s in config.sizes),
        "seen_rows_move": all((m(s, "finetune", "moved_seen_mean") or 0) > 0 for s in config.sizes),
        "several_sizes": len(config.sizes) > 2,
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e09, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    if corpus.pretrained is None:
        raise SystemExit("error: this experiment compares pretrained vectors frozen and fine-tuned: pass --embeddings")
    corpus = corpus._replace(dev=corpus.dev[: config.dev_sentences])
    held_out = frozenset() if args.conll else synthetic.held_out_words()
    runs, splits = [], []
    for size, epochs in zip(config.sizes, config.epochs_per_size):
        subset = corpus.train[:size]
        prepared = prepare(corpus, config.training, subset)
        words = word_sets(corpus.pretrained, subset, prepared, held_out)
        splits.append({"size": size, **words["counts"]})
        for seed in config.seeds:
            for mode in MODES:
                training = train.configure(config.training, embeddings_mode=mode, epochs=epochs, seed=seed)
                runs.append({"size": size, **run_one(training, prepared, words)})
                print(f"{NAME}: {size:>6} sentences {mode:>8} seed {seed}: dev F1 {runs[-1]['dev_f1']:.4f}")
    agg = aggregate(runs, config)
    j = judge(agg, config)
    held = (j["small_frozen_better_on_unseen"], j["large_finetune_wins"])
    verdict = verdict_of(held)
    result = result_head(NAME, CLAIM, config, corpus)
    result.update(held_out_words=sorted(held_out), splits=splits)
    result.update(runs=runs, aggregate=agg, judgement=j, verdict=verdict, seeds=list(config.seeds))
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
