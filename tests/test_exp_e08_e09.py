"""Smoke tests of E08 (optimizer x learning-rate sweep) and E09 (frozen vs fine-tuned vectors), --quick."""

import pytest
from test_experiments import _assert_files, run_quick


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Run each script once (--quick); returns {name: (result.json as dict, its folder)}."""
    root = tmp_path_factory.mktemp("results")
    cache = {}

    def run(name):
        if name not in cache:
            cache[name] = (run_quick(name, root / name), root / name)
        return cache[name]

    return run


def test_e08_sweep_marks_a_too_large_rate_diverged_and_measures_widths(results):
    r, folder = results("e08_optimizers")
    cfg = r["config"]
    assert len(r["runs"]) == len(cfg["optimizers"]) * len(cfg["learning_rates"])
    runs = {(x["optimizer"], x["learning_rate"]): x for x in r["runs"]}
    # plain SGD at rate 1000 blows up (relu, no clipping); the sweep records it instead of crashing
    assert runs[("sgd", 1e3)]["diverged"] and runs[("sgd", 1e3)]["best_dev_f1"] is None
    assert 1e3 in r["robustness"]["sgd"]["diverged_rates"]
    # Adam's step is bounded by its rate, so even 1000 gives a finite loss
    assert not runs[("adam", 1e3)]["diverged"]
    for opt, rob in r["robustness"].items():
        mine = [x for x in r["runs"] if x["optimizer"] == opt]
        assert rob["best_f1"] == max(x["best_dev_f1"] for x in mine if not x["diverged"])
        assert rob["best_rate"] in rob["good_rates"]
        assert rob["n_good"] >= 1 and rob["width_decades"] == rob["n_good"] / cfg["per_decade"]
        good = [x for x in mine if x["learning_rate"] in rob["good_rates"]]
        assert all(x["best_dev_f1"] >= rob["best_f1"] - cfg["band"] for x in good)
    # a rate of 1e-3 barely moves SGD in two epochs: far below its best rate
    assert r["robustness"]["sgd"]["f1_by_rate"]["0.001"] < r["robustness"]["sgd"]["best_f1"] - cfg["band"]
    # run_sweep's own files live in the sweep/ subfolder
    for f in ("results.csv", "results.json", "curves.png", "heatmap.png"):
        assert (folder / "sweep" / f).stat().st_size > 0, f
    _assert_files(folder, r)


def test_e09_finetuning_moves_only_seen_words(results):
    r, folder = results("e09_frozen_vs_finetuned")
    runs = {(x["mode"], x["size"]): x for x in r["runs"]}
    size = r["config"]["sizes"][0]
    split = next(s for s in r["splits"] if s["size"] == size)
    assert 0 < split["unseen_tokens_with_vector"] <= split["unseen_tokens"] < split["dev_tokens"]
    assert split["held_out_tokens"] > 0  # telly & co. occur in dev, never in training
    fine, frozen = runs[("finetune", size)], runs[("frozen", size)]
    # no gradient ever reaches an unseen word's row, so fine-tuning leaves it exactly where it was
    assert fine["moved_unseen_max"] == 0.0 and fine["moved_seen_mean"] > 0
    assert frozen["moved_seen_max"] == 0.0 and frozen["moved_unseen_max"] == 0.0
    # frozen: distances between words are the pretrained ones -- the rows are bit-identical (asserted
    # above) and the same numpy expression measures both, so the numbers are equal, not just close;
    # fine-tuned: the seen neighbour moved
    assert frozen["neighbour_after"] == frozen["neighbour_before"]
    assert fine["neighbour_after"] != pytest.approx(fine["neighbour_before"], rel=1e-3)
    for row in (fine, frozen):
        assert 0 <= row["acc_unseen"] <= 1 and 0 < row["acc_all"] <= 1 and 0 <= row["dev_f1"] <= 1
    assert r["judgement"]["unseen_rows_never_move"] and r["judgement"]["seen_rows_move"]
    _assert_files(folder, r)
