"""E11: word-level vs sentence-level likelihood -- does training on whole sentences (a CRF) beat the per-word softmax?

Settings, command and expected result: configs/e11.py; the prose: templates/e11.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stats
from common import corrected, load_corpus, parse_args, prepare, result_head, train_run, with_margin, write_result
from configs import base, e11
from figures import e11 as figure

from jaxbackprop import metrics, train
from jaxbackprop.evaluate import predict_labels
from jaxbackprop.features import normalize_word

NAME = "e11_sentence_likelihood"
CLAIM = "training on whole sentences (a CRF) beats the per-word softmax, even decoded under the IOB2 constraints"
ARMS = {"softmax_argmax": ("softmax", "argmax"), "softmax_viterbi": ("softmax", "viterbi"), "crf": ("crf", "viterbi")}
SPLITS = ("dev", "test")
# (arm A, arm B) whose paired difference A - B is reported; the first one carries the verdict
COMPARISONS = (("crf", "softmax_viterbi"), ("crf", "softmax_argmax"), ("softmax_viterbi", "softmax_argmax"))


def covered_flags(sentences, pretrained) -> list:
    """Per sentence, per token: does its normalised word have a pretrained vector?"""
    known = {normalize_word(w) for w in pretrained[0]} if pretrained else set()
    return [[normalize_word(t) in known for t in s.tokens] for s in sentences]


def tag_sequences(ids, ds, tags) -> list:
    """Tag ids in a split's flat token order -> one list of tag strings per sentence."""
    return metrics.split_by_lengths([tags[i] for i in np.asarray(ids)], ds.sentence_lengths)


def scored(run, prepared, flags: dict) -> dict:
    """Each decoder's entity scores on dev and test: all entities, and those with/without vectors."""
    out = {}
    for split in SPLITS:
        ds = getattr(prepared, split)
        gold = tag_sequences(ds.labels, ds, prepared.tags)
        for arm, (head, decoder) in ARMS.items():
            if head != run.model_cfg.head:
                continue
            ids, _ = predict_labels(run.params, ds, prepared.tags, run.model_cfg, decoder)
            pred = tag_sequences(ids, ds, prepared.tags)
            by = metrics.entity_scores_by(gold, pred, flags[split])
            out[arm, split] = {
                "f1": metrics.entity_scores(gold, pred)["f1"],
                "covered_f1": _f1_if_any(by["inside"]),
                "uncovered_f1": _f1_if_any(by["outside"]),
                "uncovered_share": by["share_outside"],
            }
    return out


def _f1_if_any(scores: dict):
    """F1, or None where there is nothing to score (no such entity, gold or predicted)."""
    return scores["f1"] if scores["n_true"] or scores["n_pred"] else None


def run_one(training: train.TrainConfig, prepared, flags: dict) -> list:
    """One head, one seed: a row per arm it is scored as."""
    run = train_run(training, prepared)
    rows = []
    for (arm, split), s in scored(run, prepared, flags).items():
        row = next((r for r in rows if r["arm"] == arm), None)
        if row is None:
            row = {"arm": arm, "head": training.model.head, "seed": training.seed}
            row |= {"train_seconds": run.summary["train_seconds"], "best_epoch": run.summary["best_epoch"]}
            rows.append(row)
        row |= {f"{split}_{k}": v for k, v in s.items()}
    for row in rows:  # the summary's own F1 (train's scorer) for the decoder the run selected its epoch with
        if ARMS[row["arm"]][1] == training.decode:
            row["summary_dev_f1"], row["summary_test_f1"] = run.summary["dev_f1"], run.summary.get("test_f1")
    return rows


def aggregate(runs: list, config: e11.Config) -> dict:
    """Each arm's interval of every number; each comparison's paired interval, seed by seed."""
    keys = [k for k in runs[0] if k.startswith(SPLITS) or k == "train_seconds"]
    arms = {}
    for arm in ARMS:
        mine = sorted((r for r in runs if r["arm"] == arm), key=lambda r: r["seed"])
        values = {k: [r[k] for r in mine if r.get(k) is not None] for k in keys}
        arms[arm] = {k: stats.interval(v) for k, v in values.items() if v}
    diffs = {}
    for a, b in COMPARISONS:
        of = lambda arm, k: [r[k] for r in sorted(runs, key=lambda r: r["seed"]) if r["arm"] == arm]  # noqa: E731
        for split in SPLITS:
            for k in ("f1", "covered_f1", "uncovered_f1"):
                xs, ys = of(a, f"{split}_{k}"), of(b, f"{split}_{k}")
                if None not in xs + ys:
                    d = stats.paired(xs, ys)
                    name = f"{a}-{b}:{split}_{k}"
                    diffs[name] = {"name": name, **d, "bar": config.bar, "side": stats.side(d, config.bar)}
    diffs = {c["name"]: c for c in corrected(list(diffs.values()), config.primary)}
    return {"arms": arms, "differences": diffs}


def comparisons(agg: dict) -> list:
    """The table of paired entity-F1 differences the write-up shows (all entities, dev and test)."""
    rows = []
    for a, b in COMPARISONS:
        for split in SPLITS:
            d = agg["differences"][f"{a}-{b}:{split}_f1"]
            rows.append({"a": a, "b": b, "split": split, **{k: d[k] for k in ("mean", "low", "high", "wins", "n")}})
            rows[-1] |= {k: d[k] for k in ("side", "role", "p", "p_holm") if k in d}
    return rows


def judge(agg: dict, config: e11.Config) -> dict:
    main = agg["differences"]["crf-softmax_viterbi:test_f1"]
    argmax = agg["differences"]["crf-softmax_argmax:test_f1"]
    dev = agg["differences"]["crf-softmax_viterbi:dev_f1"]
    arms = agg["arms"]
    return {
        "bar": config.bar,
        "crf_vs_viterbi_test": main["side"],
        "crf_vs_viterbi_dev": dev["side"],
        "crf_vs_argmax_test": argmax["side"],
        "viterbi_vs_argmax_test": agg["differences"]["softmax_viterbi-softmax_argmax:test_f1"]["side"],
        "crf_slowdown": arms["crf"]["train_seconds"]["mean"] / arms["softmax_viterbi"]["train_seconds"]["mean"],
        "aim_test_f1": 0.87,
        "aim_reached_by": [a for a in ARMS if arms[a]["test_f1"]["mean"] >= 0.87],
        "best_test_arm": max(ARMS, key=lambda a: arms[a]["test_f1"]["mean"]),
    }


def main(argv=None) -> dict:
    started = time.perf_counter()
    args = parse_args(NAME, __doc__, argv, real_data=True)
    config = base.select(e11, quick=args.quick, conll=args.conll is not None)
    corpus = load_corpus(args)
    subset = corpus.train[: config.train_sentences]
    prepared = prepare(corpus, config.training, subset)
    flags = {split: covered_flags(getattr(corpus, split), corpus.pretrained) for split in SPLITS}
    runs = []
    for seed in config.seeds:
        for head in config.heads:
            training = train.configure(config.training, head=head, seed=seed)
            rows = run_one(training, prepared, flags)
            runs += rows
            mine = "; ".join(f"{r['arm']} dev F1 {r['dev_f1']:.4f} test {r['test_f1']:.4f}" for r in rows)
            print(f"{NAME}: seed {seed}: {mine} ({rows[0]['train_seconds']:.0f} s)")
    agg = aggregate(runs, config)
    j = judge(agg, config)
    result = result_head(NAME, CLAIM, config, corpus, prepared, len(subset))
    result.update(runs=runs, aggregate=agg, judgement=j, seeds=list(config.seeds))
    result["comparisons"] = comparisons(agg)
    main = agg["differences"][config.primary[0]]
    result["verdict"] = with_margin(stats.verdict(main, config.bar), main, config.margin)
    result["plots"] = figure.draw(result, args.out)
    return write_result(args, result, started)


if __name__ == "__main__":
    main(sys.argv[1:])
