import math

import numpy as np
import pytest

from detectors.halt.adapter import PAD_LOGPROB, TOP_K, logprob_matrix, token_row
from detectors.sampling import TokenLogprob


def test_selected_token_first_then_alternatives_descending_without_it():
    tok = TokenLogprob("b", -0.5, (("a", -0.2), ("c", -3.0), ("b", -0.5), ("d", -1.0)))
    row, seen = token_row(tok)
    assert row[:4].tolist() == [-0.5, -0.2, -1.0, -3.0]
    assert (row[4:] == PAD_LOGPROB).all() and row.shape == (TOP_K,)
    assert seen == 3


def test_selected_token_missing_from_alternatives():
    row, seen = token_row(TokenLogprob("z", -4.0, (("a", -0.1), ("b", -0.3))))
    assert row[:3].tolist() == [-4.0, -0.1, -0.3] and seen == 2


def test_twenty_one_entries_keep_the_19_best_alternatives():
    top = [("sel", -0.1)] + [(f"t{i}", -1.0 - i) for i in range(20)]
    row, seen = token_row(TokenLogprob("sel", -0.1, tuple(top)))
    assert seen == 20
    assert row.tolist() == [-0.1] + [-1.0 - i for i in range(19)]


def test_openai_dicts_and_records_give_the_same_matrix():
    as_tokens = [TokenLogprob("x", -0.3, (("x", -0.3), ("y", -1.7))),
                 TokenLogprob("y", -2.0, (("q", -0.2),))]
    as_openai = [{"token": "x", "logprob": -0.3, "top_logprobs": [
                     {"token": "x", "logprob": -0.3}, {"token": "y", "logprob": -1.7}]},
                 {"token": "y", "logprob": -2.0, "top_logprobs": [{"token": "q", "logprob": -0.2}]}]
    as_records = [{"token": "x", "logprob": -0.3, "top": [["x", -0.3], ["y", -1.7]]},
                  {"token": "y", "logprob": -2.0, "top": [["q", -0.2]]}]
    a, b, c = (logprob_matrix(t) for t in (as_tokens, as_openai, as_records))
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.values, c.values)
    assert a.alternatives_seen.tolist() == [1, 1]


def test_no_alternatives_at_all_pads_everything_but_the_selected_token():
    m = logprob_matrix([{"token": "x", "logprob": -0.1, "top_logprobs": []}])
    assert m.values[0, 0] == -0.1 and (m.values[0, 1:] == PAD_LOGPROB).all()
    assert m.alternatives_seen.tolist() == [0]


def test_empty_answer_is_zero_rows():
    m = logprob_matrix([])
    assert m.values.shape == (0, TOP_K) and m.n_tokens == 0


@pytest.mark.parametrize("bad", [float("-inf"), float("nan"), None, -1e6])
def test_non_finite_and_huge_values_become_the_floor(bad):
    row, _ = token_row({"token": "x", "logprob": bad, "top_logprobs": [
        {"token": "y", "logprob": bad}, {"token": "z", "logprob": -1.0}]})
    assert np.isfinite(row).all()
    assert row[0] == PAD_LOGPROB and row[1] == -1.0 and row[2] == PAD_LOGPROB


def test_positive_values_clip_to_zero():
    row, _ = token_row(TokenLogprob("x", math.inf, (("y", 0.3),)))
    assert row[0] == 0.0 and row[1] == 0.0


def test_real_answer_has_twenty_columns(shared_records):
    record = shared_records[0]
    m = logprob_matrix(record["tokens"])
    assert m.values.shape == (len(record["tokens"]), TOP_K)
    assert m.values[0, 0] == pytest.approx(record["tokens"][0]["logprob"])
    assert (np.diff(m.values[:, 1:], axis=1) <= 0).all()


def test_unsupported_type_is_an_error():
    with pytest.raises(TypeError):
        token_row(("x", -1.0))


def test_vectorised_matrix_equals_the_reference_rows():
    """logprob_matrix (one pass over the whole array) == stacking token_row per token."""
    rng = np.random.default_rng(7)
    specials = [float("nan"), float("inf"), float("-inf"), None, 3.0, -1e9]
    tokens = []
    for t in range(60):
        k = int(rng.integers(0, 22))
        top = [{"token": f"a{j}", "logprob": float(-rng.exponential(3))} for j in range(k)]
        if k and rng.random() < 0.3:
            top[int(rng.integers(0, k))]["logprob"] = specials[t % len(specials)]
        chosen = f"a{int(rng.integers(0, 25))}"  # among the alternatives or not
        tokens.append({"token": chosen, "logprob": float(-rng.exponential(1)),
                       "top_logprobs": top})
    fast = logprob_matrix(tokens)
    rows = [token_row(item) for item in tokens]
    assert np.allclose(fast.values, np.stack([r for r, _ in rows]))
    assert fast.alternatives_seen.tolist() == [n for _, n in rows]
