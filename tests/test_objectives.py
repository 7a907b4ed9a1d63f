"""Search objectives: parsing, weighted sums, Pareto fronts and the documented pick."""

import pytest

from gnsel.tune import parse_objective, pareto_front, pick_from_front

ROW = {"val_loss": 0.5, "val_acc": 0.8, "gn_full": 10.0, "gn_fc": 2.0, "traj_gn": 1.0, "train_loss": 0.1}


def test_single_and_weighted_objectives():
    assert parse_objective("val_loss")(ROW) == 0.5
    assert parse_objective("val_error")(ROW) == pytest.approx(0.2)
    assert parse_objective("val_loss+0.1*gn_fc")(ROW) == pytest.approx(0.7)
    assert parse_objective("val_loss + 1e-2*gn_full")(ROW) == pytest.approx(0.6)
    o = parse_objective("val_loss+0.1*gn_fc")
    assert o.uses_gn and not o.multi and o.metrics == ["gn_fc", "val_loss"]
    assert not parse_objective("val_loss").uses_gn


def test_multi_objective():
    o = parse_objective("[val_loss, gn_fc]")
    assert o.multi and o(ROW) == (0.5, 2.0)


@pytest.mark.parametrize("bad", ["val_los", "", "val_loss+", "[val_loss]", "[val_loss, gn_fc", "2*", "-1*gn_fc"])
def test_bad_objectives_are_named(bad):
    with pytest.raises(ValueError):
        parse_objective(bad)


def test_pareto_front_and_pick():
    pts = [(1.0, 3.0), (2.0, 2.0), (3.0, 1.0), (3.0, 3.0), (float("nan"), 0.0), (1.5, 2.0)]
    assert pareto_front(pts) == [0, 2, 5]
    # knee: least sum of normalised objectives; (1.5, 2.0) -> 0.25 + 0.5 = 0.75 beats the ends (1.0)
    assert pick_from_front(pts) == 5
    assert pick_from_front([]) is None
