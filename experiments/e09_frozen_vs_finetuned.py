"""E09: frozen vs fine-tuned vectors -- small data: fixed pretrained vectors help unseen words; large: fine-tuning wins.

Settings, command and expected result: configs/e09.py; the prose: templates/e09.md.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats
import unseen_words
from common import corrected, load_corpus, parse_args, prepare, result_head, train_run, verdict_of, write_result
from configs import base, e09
from figures import e09 as figure

from jaxbackprop import metrics, pipeline, synthetic, train
from jaxbackprop.evaluate import predict_labels

NAME = "e09_frozen_vs_finetuned"
CLAIM = "small data: fine-tuning hurts words unseen in training; large data: fine-tuning wins"
SPLITS = ("dev", "test")
SCORES = ("f1", "unseen_f1")  # all entities; those with a word unseen in training
# (arm A, arm B) whose paired difference A - B is reported per size
COMPARISONS = (("pretrained_frozen", "finetune"), ("frozen", "finetune"), ("frozen", "pretrained_frozen"))


def tag_sequences(ids, ds, tags) -> list:
    """Tag ids in a split's flat token order -> one list of tag strings per sentence."""
    return metrics.split_by_lengths([tags[i] for i in ids.tolist()], ds.sentence_lengths)


def scored(run, prepared, flags: dict, decode: str) -> dict:
    """Entity F1 of the best epoch on each split: all entities, and those with a word unseen in training."""
    out = {}
    for split in SPLITS:
        ds = getattr(prepared, split)
        gold = tag_sequences(ds.labels, ds, prepared.tags)
        pred = tag_sequences(predict_labels(run.params, ds, prepared.tags, run.model_cfg, decode)[0], ds, prepared.tags)
        by = metrics.entity_scores_by(gold, pred, flags[split])
        unseen = by["outside"]  # entities with at least one token whose word training never showed
        out[f"{split}_f1"] = metrics.entity_scores(gold, pred)["f1"]
        out[f"{split}_unseen_f1"] = unseen["f1"] if unseen["n_true"] or unseen["n_pred"] else None
        out[f"{split}_unseen_share"] = by["share_outside"]
    return out


def run_one(training: train.TrainConfig, prepared, flags: dict, kinds: dict) -> dict:
    run = train_run(training, prepared)
    s = run.summary
    row = {"arm": training.embeddings_mode, "seed": training.seed, "max_epochs": training.epochs}
    row |= {"best_epoch": s["best_epoch"], "epochs_run": s["epochs_run"], "train_seconds": s["train_seconds"]}
    # stopped by patience: the best epoch lies `patience` epochs back; else the cap ended the run
    row |= {"stopped_early": s["epochs_run"] < training.epochs, "best_was_last": s["best_epoch"] == s["epochs_run"]}
    row |= {"summary_dev_f1": s["dev_f1"], "summary_test_f1": s.get("test_f1")}
    row |= scored(run, prepared, flags, training.decode)
    start = pipeline.initial_embeddings(prepared, training.seed)  # the E this seed started from
    return row | unseen_words.movement(start, run.params["E"], kinds)


def aggregate(runs: list, config: e09.Config) -> dict:
    """Per size: each arm's interval of every score, and each comparison's paired interval, seed by seed."""
    keys = [f"{split}_{k}" for split in SPLITS for k in SCORES]
    out = {}
    for size in config.sizes:
        mine = sorted((r for r in runs if r["size"] == size), key=lambda r: r["seed"])
        of = lambda arm, k, mine=mine: [r[k] for r in mine if r["arm"] == arm]  # noqa: E731 (seed order)
        arms = {}
        for arm in config.arms:
            arms[arm] = {k: stats.interval(v) for k in keys + ["best_epoch"] if None not in (v := of(arm, k))}
            arms[arm]["best_was_last"] = sum(of(arm, "best_was_last"))
            arms[arm]["stopped_early"] = sum(of(arm, "stopped_early"))
        diffs = {}
        for a, b in COMPARISONS:
            if a not in config.arms or b not in config.arms:
                continue
            for k in keys:
                xs, ys = of(a, k), of(b, k)
                if None not in xs + ys:
                    d = stats.paired(xs, ys)
                    name = f"{size}:{a}-{b}:{k}"
                    diffs[f"{a}-{b}:{k}"] = {"name": name, "bar": config.bar, **d, "side": stats.side(d, config.bar)}
        out[str(size)] = {"arms": arms, "differences": diffs}
    # the primary comparisons by their own intervals, every other (sizes, splits, arms) Holm-corrected
    flat = [d for part in out.values() for d in part["differences"].values()]
    # a split without an entity with an unseen word scores none: its comparison is then missing (judge: not resolved)
    flat = corrected(flat, [n for n in primary_names(config) if n in {d["name"] for d in flat}])
    by = {d["name"]: d for d in flat}
    for part in out.values():
        part["differences"] = {k: by[d["name"]] for k, d in part["differences"].items()}
    return out


def primary_names(config: e09.Config) -> list:
    """``config.primary`` with "smallest" / "largest" read as the config's first and last size."""
    sizes = {"smallest": config.sizes[0], "largest": config.sizes[-1]}
    return [f"{sizes[which]}:{rest}" for which, rest in (name.split(":", 1) for name in config.primary)]


def comparisons(agg: dict) -> list:
    """The table of paired differences the write-up shows: every size and comparison, on test."""
    rows = []
    for size, part in agg.items():
        for name, d in part["differences"].items():
            arms, score = name.split(":")
            if not score.startswith("test"):
                continue
            a, b = arms.split("-")
            rows.append({"size": int(size), "a": a, "b": b, "score": score, "side": d["side"]})
            rows[-1] |= {k: d[k] for k in ("mean", "low", "high", "wins", "n", "role", "p_holm") if k in d}
    return rows


def table(agg: dict) -> list:
    """One row per (size, arm): its intervals, as the write-up's first table shows them."""
    return [{"size": int(size), "arm": arm, **iv} for size, part in agg.items() for arm, iv in part["arms"].items()]


def judge(agg: dict, runs: list, config: e09.Config) -> dict:
    small, large = str(config.sizes[0]), str(config.sizes[-1])
    diff = lambda size, name: agg[size]["differences"].get(name)  # noqa: E731 (None: nothing to score)
    kept_unseen = diff(small, "pretrained_frozen-finetune:test_unseen_f1")
    fine_large = diff(large, "pretrained_frozen-finetune:test_f1")
    confound = {s: diff(s, "frozen-pretrained_frozen:test_f1") for s in agg}
    return {
        "bar": config.bar,
        "small_size": int(small),
        "large_size": int(large),
        # part 1: pretrained rows kept -> better F1 on entities with an unseen word, at the smallest size
        "small_unseen_side": kept_unseen["side"] if kept_unseen else "across",
        "small_unseen_diff": kept_unseen and {k: kept_unseen[k] for k in ("mean", "low", "high", "wins", "n")},
        "small_unseen_holds": stats.holds(kept_unseen, config.bar) if kept_unseen else None,
        # part 2: fine-tuning wins overall test F1 at the largest size: pretrained_frozen - finetune below the bar
        "large_f1_side": fine_large["side"],
        "large_f1_diff": {k: fine_large[k] for k in ("mean", "low", "high", "wins", "n")},
        "large_finetune_holds": {"below": True, "above": False, "across": None}[fine_large["side"]],
        "frozen_vs_pretrained_frozen": [{"size": int(s), "side": d and d["side"]} for s, d in confound.items()],
        "best_was_last": sum(r["best_was_last"] and not r["stopped_early"] for r in runs),
        "stopped_early": sum(r["stopped_early"] for r in runs),
        "runs": len(runs),
        "pretrained_rows_fixed": all(
            r["moved_seen_pretrained_max"] in (0.0, None) for r in runs if r["arm"] != "finetune"
        ),
        "random_rows_train": all(
            (r["moved_seen_random_mean"] or 0) > 0 for r in runs if r["arm"] == "pretrained_frozen"
        ),
        "unseen_rows_never_move": all(r["moved_unseen_pretrained_max"] in (0.0, None) for r in runs),
    }


@contextlib.contextmanager
def shared_compiles():
    """Runs inside the block share their compiled XLA programs through a temporary on-disk cache.

    Each run builds its own jitted epoch, so without it every seed recompiles the same program
    (~3 s of a ~4 s synthetic run); seeds, arms' masks and sizes enter the programs as arguments,
    constants or shapes, so a cached program is the one the run would compile. JAX's settings are
    restored after.
    """
    settings = {"jax_compilation_cache_dir": None, "jax_persistent_cache_min_compile_time_secs": 0}
    before = {name: getattr(jax.config, name) for name in settings}
    with tempfile.TemporaryDirectory(prefix="e09-compiled-") as folder:
        compilation_cache.reset_cache()
        for name, value in {**settings, "jax_compilation_cache_dir": folder}.items():
            jax.config.update(name, value)
        try:
            yield
        finally:
            for name, value in before.items():
                jax.config.update(name, value)
            compilation_cache.reset_cache()


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e09, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    if corpus.pretrained is None:
        raise SystemExit("error: this experiment compares pretrained vectors frozen and fine-tuned: pass --embeddings")
    held_out = frozenset() if args.conll else synthetic.held_out_words()
    pretrained = unseen_words.thin_vectors(corpus.pretrained, config.thin_every, keep=held_out)
    corpus = corpus._replace(dev=corpus.dev[: config.dev_sentences], pretrained=pretrained)
    with shared_compiles():
        runs, splits = train_all(corpus, config)
    agg = aggregate(runs, config)
    j = judge(agg, runs, config)
    result = result_head(NAME, CLAIM, config, corpus)
    result.update(held_out_words=sorted(held_out), splits=splits, runs=runs, aggregate=agg, judgement=j)
    result.update(table=table(agg), comparisons=comparisons(agg), seeds=list(config.seeds))
    result["verdict"] = verdict_of([j["small_unseen_holds"], j["large_finetune_holds"]])
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


def train_all(corpus, config: e09.Config) -> tuple[list, list]:
    """Every (size, seed, arm) run's row, and each training subset's counts."""
    runs, splits = [], []
    for size, epochs, patience in zip(config.sizes, config.max_epochs, config.patience):
        subset = corpus.train[:size]
        prepared = prepare(corpus, config.training, subset)
        flags = {split: unseen_words.seen_flags(getattr(corpus, split), subset) for split in SPLITS}
        kinds = unseen_words.row_kinds(prepared)
        splits.append({"size": size, **unseen_words.counts(prepared, subset, flags)})
        for seed in config.seeds:
            for arm in config.arms:
                changes = dict(embeddings_mode=arm, epochs=epochs, patience=patience, seed=seed)
                row = run_one(train.configure(config.training, **changes), prepared, flags, kinds)
                runs.append({"size": size, **row})
                print(
                    f"{NAME}: {size:>6} sentences {arm:>17} seed {seed}: test F1 {row['test_f1']:.4f}, "
                    f"unseen {row['test_unseen_f1'] or 0:.4f} (best epoch {row['best_epoch']}/{row['epochs_run']})"
                )
    return runs, splits


if __name__ == "__main__":
    main(sys.argv[1:])
