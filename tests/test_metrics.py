"""Entity-level scores by the CoNLL rules, checked by hand and against seqeval's own scorer."""

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval import metrics as seqeval_metrics

from jaxbackprop.metrics import (
    entity_scores,
    entity_scores_by,
    entity_scores_of_each,
    split_by_lengths,
    token_accuracy,
)

TRUE = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]


def prf(scores):
    return scores["precision"], scores["recall"], scores["f1"]


def test_all_right():
    s = entity_scores(TRUE, TRUE)
    assert prf(s) == (1.0, 1.0, 1.0) and (s["tp"], s["n_pred"], s["n_true"]) == (3, 3, 3)


def test_one_of_two_entities_right():
    s = entity_scores([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]])
    # 1 predicted, 1 right; 2 true -> P = 1, R = 1/2, F1 = 2 * 1 * 0.5 / 1.5
    assert prf(s) == pytest.approx((1.0, 0.5, 2 / 3))
    assert s["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert s["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1}


def test_wrong_type_is_a_miss_and_a_false_alarm():
    s = entity_scores([["B-PER", "I-PER"]], [["B-ORG", "I-ORG"]])
    assert prf(s) == (0.0, 0.0, 0.0)
    assert s["per_type"]["ORG"]["support"] == 0 and s["per_type"]["PER"]["support"] == 1


@pytest.mark.parametrize("pred", [["B-LOC", "O"], ["O", "B-LOC"], ["B-LOC", "B-LOC"]])
def test_partial_span_is_wrong(pred):
    assert prf(entity_scores([["B-LOC", "I-LOC"]], [pred])) == (0.0, 0.0, 0.0)


def test_longer_span_is_wrong():
    s = entity_scores([["B-LOC", "I-LOC", "O"]], [["B-LOC", "I-LOC", "I-LOC"]])
    assert prf(s) == (0.0, 0.0, 0.0)


def test_hand_computed_micro_average():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-MISC"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "B-PER", "B-MISC"]]
    # true: PER LOC | ORG MISC (4); pred: PER ORG(type wrong) | ORG PER MISC (5); right: PER, ORG, MISC
    s = entity_scores(true, pred)
    assert prf(s) == pytest.approx((3 / 5, 3 / 4, 2 * 0.6 * 0.75 / 1.35))
    assert s["per_type"]["ORG"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert s["per_type"]["PER"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})


def test_i_after_o_starts_an_entity_as_in_conlleval():
    s = entity_scores([["O", "B-PER", "I-PER"]], [["O", "I-PER", "I-PER"]])
    assert prf(s) == (1.0, 1.0, 1.0)
    s = entity_scores([["B-PER", "B-LOC"]], [["B-PER", "I-LOC"]])  # I-LOC after PER starts a LOC
    assert prf(s) == (1.0, 1.0, 1.0)


def test_entities_do_not_run_across_sentences():
    s = entity_scores([["B-PER"], ["I-PER"]], [["B-PER"], ["I-PER"]])
    assert s["n_true"] == 2


@pytest.mark.parametrize(
    "true, pred, expected",
    [
        ([["O", "O"]], [["O", "O"]], (0.0, 0.0, 0.0)),  # nothing to find, nothing found
        ([["O", "O"]], [["B-PER", "O"]], (0.0, 0.0, 0.0)),  # only false alarms
        ([["B-PER", "O"]], [["O", "O"]], (0.0, 0.0, 0.0)),  # nothing predicted
    ],
)
def test_undefined_ratios_are_zero_without_warnings(true, pred, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prf(entity_scores(true, pred)) == expected


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 true sentences but 1 predicted"):
        entity_scores(TRUE, TRUE[:1])
    with pytest.raises(ValueError, match="sentence 1: 2 true tags but 1 predicted"):
        entity_scores(TRUE, [TRUE[0], ["O"]])
    with pytest.raises(ValueError, match="illegal tag 'PER'"):
        entity_scores([["PER"]], [["O"]])


TAGS = ["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG"]
sentences = st.lists(st.sampled_from(TAGS), min_size=1, max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(sentences, st.randoms(use_true_random=False)), min_size=1, max_size=5))
def test_agrees_with_seqeval_scorer(pairs):
    true = [t for t, _ in pairs]
    pred = [[r.choice(TAGS) for _ in t] for t, r in pairs]
    ours = entity_scores(true, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval's UndefinedMetricWarning; it returns 0 as we do
        theirs = (
            seqeval_metrics.precision_score(true, pred, zero_division=0),
            seqeval_metrics.recall_score(true, pred, zero_division=0),
            seqeval_metrics.f1_score(true, pred, zero_division=0),
        )
    assert prf(ours) == pytest.approx(theirs, abs=1e-12)
    # several predictions of the same gold tags, gold entities read once: the same scores each
    other = [list(reversed(t)) for t in pred]
    each = entity_scores_of_each(true, {"pred": pred, "other": other})
    assert each == {"pred": ours, "other": entity_scores(true, other)}


def test_entity_scores_of_each_checks_every_prediction():
    with pytest.raises(ValueError, match="1 true tags but 2 predicted"):
        entity_scores_of_each([["O"]], {"good": [["O"]], "bad": [["O", "O"]]})


def test_token_accuracy():
    assert token_accuracy(TRUE, [["B-PER", "O", "O", "B-LOC"], ["O", "O"]]) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="at least one token"):
        token_accuracy([], [])


def test_split_by_lengths():
    assert split_by_lengths(["a", "b", "c", "d"], [1, 0, 3]) == [["a"], [], ["b", "c", "d"]]
    parts = split_by_lengths(np.arange(5), np.array([2, 3], np.int32))
    assert [p.tolist() for p in parts] == [[0, 1], [2, 3, 4]]
    with pytest.raises(ValueError, match="sum to len"):
        split_by_lengths([1, 2, 3], [1, 1])
    with pytest.raises(ValueError, match="sum to len"):
        split_by_lengths([1], [2, -1])


def test_entities_scored_apart_by_their_tokens():
    # sentence 0: PER (both tokens flagged) found; LOC (unflagged token) missed.
    # sentence 1: gold ORG is flagged and found as PER (a miss and a false alarm, both inside);
    # a predicted MISC over an unflagged token is a false alarm outside
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-PER", "O", "B-MISC"]]
    flags = [[True, True, True, False], [True, True, False]]
    s = entity_scores_by(true, pred, flags)
    assert (s["inside"]["tp"], s["inside"]["n_pred"], s["inside"]["n_true"]) == (1, 2, 2)
    assert (s["outside"]["tp"], s["outside"]["n_pred"], s["outside"]["n_true"]) == (0, 1, 1)
    assert s["inside"]["f1"] == 0.5 and s["outside"]["f1"] == 0.0 and s["share_outside"] == 1 / 3
    # an entity with one unflagged token of two is outside
    assert entity_scores_by([["B-PER", "I-PER"]], [["B-PER", "I-PER"]], [[True, False]])["outside"]["tp"] == 1
    # every token flagged: inside is the plain score
    assert entity_scores_by(true, pred, [[True] * len(t) for t in true])["inside"] == entity_scores(true, pred)
    with pytest.raises(ValueError, match="one flag per token"):
        entity_scores_by(true, pred, [[True] * 4, [True]])
