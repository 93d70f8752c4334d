"""PhaseDetector on synthetic evaluation rows."""

import math

import pytest

from grokkit.callbacks import EvaluationCallback, PhaseDetector
from grokkit.callbacks.phases import first_crossing
from grokkit.errors import ConfigError

LR = 0.01


def _row(step: int, train_acc: float | None, test_acc: float | None, **extra) -> dict:
    row = {"step": step, "time": LR * step, "train/loss": 0.5, "test/loss": 0.7}
    if train_acc is not None:
        row["train/acc"] = train_acc
    if test_acc is not None:
        row["test/acc"] = test_acc
    row["param_norm"] = 100.0
    row.update(extra)
    return row


def _feed(detector: PhaseDetector, rows: list[dict]) -> PhaseDetector:
    for row in rows:
        detector.on_evaluation(trainer=None, task=None, batch=None, row=row)
    return detector


def _grokking_curve() -> list[dict]:
    """Train acc 100% from step 2; test acc at chance until step 30 000, then up."""
    steps = [0, 1, 2, 3, 5, 10, 100, 1000, 10_000, 20_000, 25_000, 30_000, 35_000, 40_000]
    train = [0.5, 0.9, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    test = [0.5, 0.5, 0.52, 0.5, 0.49, 0.51, 0.5, 0.5, 0.51, 0.55, 0.8, 0.97, 0.99, 1.0]
    return [_row(s, a, b) for s, a, b in zip(steps, train, test, strict=True)]


def test_is_an_evaluation_callback():
    assert isinstance(PhaseDetector(), EvaluationCallback)


# Crossings of _grokking_curve, interpolated linearly in time between the bracketing rows:
# train acc 0.9 -> 1.0 over steps 1 -> 2 reaches 0.99 at 1.9; test acc 0.8 -> 0.97 over steps
# 25 000 -> 30 000 reaches 0.95 at 25 000 + 5 000 * 0.15 / 0.17.
MEMORIZED_AT = 1.9
GROKKED_AT = 25_000 + 5_000 * 0.15 / 0.17  # 29 411.76


def test_grokking_curve():
    det = _feed(PhaseDetector(), _grokking_curve())
    assert det.memorization_step == 2  # the first whole step at or after the crossing
    assert det.memorization_time == pytest.approx(LR * MEMORIZED_AT)
    assert det.grokking_step == 29_412
    assert det.grokking_time == pytest.approx(LR * GROKKED_AT)
    assert isinstance(det.memorization_step, int) and isinstance(det.grokking_step, int)


def test_times_come_from_the_time_column_not_the_step():
    # With a warm-up, time is not LR·step: the detector must report the row's own time.
    rows = _grokking_curve()
    for r in rows:
        r["time"] = 3.0 * r["step"] + 0.25
    det = _feed(PhaseDetector(), rows)
    assert det.memorization_time == pytest.approx(3.0 * MEMORIZED_AT + 0.25)
    assert det.grokking_time == pytest.approx(3.0 * GROKKED_AT + 0.25)


def test_float_steps_become_int():
    det = _feed(PhaseDetector(), [_row(0, 0.5, 0.5), {**_row(7, 1.0, 1.0), "step": 7.0}])
    assert det.memorization_step == 7 and type(det.memorization_step) is int
    assert det.grokking_step == 7 and type(det.grokking_step) is int


def test_first_crossing_is_kept():
    # A later dip and re-crossing must not move the times already found.
    rows = _grokking_curve()
    rows += [_row(50_000, 0.5, 0.5), _row(60_000, 1.0, 1.0)]
    det = _feed(PhaseDetector(), rows)
    assert det.memorization_step == 2
    assert det.grokking_step == 29_412


def test_no_grokking():
    rows = [_row(s, 1.0 if s >= 3 else 0.6, 0.5) for s in [0, 1, 3, 10, 100, 1000, 10_000]]
    det = _feed(PhaseDetector(), rows)
    assert det.memorization_step == 3
    assert det.memorization_time == pytest.approx(LR * (1 + 2 * 0.39 / 0.4))
    assert det.grokking_step is None and det.grokking_time is None


def test_no_memorization_leaves_both_none_even_with_high_test_acc():
    rows = [_row(s, 0.9, 0.99) for s in [0, 1, 10, 100, 1000]]
    det = _feed(PhaseDetector(), rows)
    assert det.memorization_step is None and det.memorization_time is None
    assert det.grokking_step is None and det.grokking_time is None


def test_grokking_cannot_precede_memorization():
    # Test accuracy is high before the training set is memorized: grokking is not reported
    # until memorization, and then at the memorization time itself (test acc still high).
    rows = [
        _row(0, 0.5, 0.5),
        _row(10, 0.8, 0.97),
        _row(20, 0.9, 0.98),
        _row(30, 1.0, 0.99),
        _row(40, 1.0, 1.0),
    ]
    det = _feed(PhaseDetector(), rows)
    assert det.memorization_step == 29  # train acc 0.9 -> 1.0 over steps 20 -> 30
    assert det.grokking_step == 29
    assert det.grokking_time == det.memorization_time == pytest.approx(LR * 29)

    # ... and if test accuracy dropped by then, grokking waits for the next crossing
    rows = [
        _row(0, 0.5, 0.5),
        _row(10, 0.8, 0.97),
        _row(30, 1.0, 0.6),
        _row(40, 1.0, 0.6),
        _row(50, 1.0, 0.96),
    ]
    det = _feed(PhaseDetector(), rows)
    assert det.memorization_step == 29
    assert det.grokking_step == 50  # test acc 0.6 -> 0.96 over steps 40 -> 50
    assert det.grokking_time == pytest.approx(LR * (40 + 10 * 0.35 / 0.36))


def test_default_thresholds_are_inclusive():
    det = PhaseDetector()
    assert det.memorization_threshold == 0.99 and det.grokking_threshold == 0.95
    _feed(det, [_row(0, 0.9899, 0.5), _row(5, 0.99, 0.9499), _row(9, 0.99, 0.95)])
    assert det.memorization_step == 5
    assert det.grokking_step == 9


def test_custom_thresholds_are_respected():
    rows = [
        _row(0, 0.5, 0.5),
        _row(10, 0.85, 0.6),
        _row(20, 0.95, 0.75),
        _row(30, 1.0, 0.9),
        _row(40, 1.0, 0.99),
    ]
    loose = _feed(PhaseDetector(memorization_threshold=0.8, grokking_threshold=0.7), rows)
    assert (loose.memorization_step, loose.grokking_step) == (9, 17)
    default = _feed(PhaseDetector(), rows)
    assert (default.memorization_step, default.grokking_step) == (28, 36)
    strict = _feed(PhaseDetector(memorization_threshold=1.0, grokking_threshold=1.0), rows)
    assert (strict.memorization_step, strict.grokking_step) == (30, None)


def test_state_dict_round_trip():
    rows = _grokking_curve()
    det = _feed(PhaseDetector(), rows)
    state = det.state_dict()
    fresh = PhaseDetector()
    fresh.load_state_dict(state)
    assert fresh.memorization_step == 2
    assert fresh.memorization_time == pytest.approx(LR * MEMORIZED_AT)
    assert fresh.grokking_step == 29_412 and fresh.grokking_time == pytest.approx(LR * GROKKED_AT)
    assert fresh.summary() == det.summary()


def test_resumed_detector_keeps_the_earlier_times():
    # Resumed after memorization but before grokking: memorization is not re-detected later.
    rows = _grokking_curve()
    first = _feed(PhaseDetector(), rows[:6])
    assert first.memorization_step == 2 and first.grokking_step is None
    resumed = PhaseDetector()
    resumed.load_state_dict(first.state_dict())
    _feed(resumed, rows[6:])
    assert resumed.memorization_step == 2
    assert resumed.grokking_step == 29_412  # interpolated from the row before the checkpoint
    assert resumed.summary() == _feed(PhaseDetector(), rows).summary()


def test_load_state_dict_from_empty_state_resets():
    det = _feed(PhaseDetector(), _grokking_curve())
    det.load_state_dict({})
    assert det.memorization_step is None and det.grokking_step is None


def test_summary_contains_thresholds_and_times():
    detector = PhaseDetector(memorization_threshold=0.9, grokking_threshold=0.8)
    summary = _feed(detector, _grokking_curve()).summary()
    assert summary["thresholds"] == {
        "memorization_train_acc": 0.9,
        "grokking_test_acc": 0.8,
        "misgrokking_fraction_of_peak": 0.6,
        "misgrokking_min_peak": 0.75,
        "memorization_train_loss": 1e-4,
        "grokking_test_loss_ratio": 0.01,
    }
    assert summary["memorization_step"] == 1  # train acc 0.9 at step 1 reaches 0.9
    assert summary["memorization_time"] == pytest.approx(0.01)
    assert summary["grokking_step"] == 25_000  # test acc 0.8 reaches the 0.8 threshold
    assert summary["grokking_time"] == pytest.approx(250.0)


def test_summary_before_any_row():
    summary = PhaseDetector().summary()
    assert summary["memorization_step"] is None and summary["grokking_step"] is None
    assert summary["thresholds"]["memorization_train_acc"] == 0.99
    assert summary["thresholds"]["grokking_test_acc"] == 0.95


def _regression_curve() -> list[dict[str, float]]:
    """E5-like: train loss ~0 at once; test loss on a plateau, then down 1000x."""
    test = {0: 0.1, 10: 0.08, 100: 0.08, 1_000: 0.07, 10_000: 0.01, 20_000: 5e-4, 30_000: 1e-4}
    return [
        {"step": s, "time": LR * s, "train/loss": 0.1 if s == 0 else 1e-6, "test/loss": v}
        for s, v in test.items()
    ]


def test_regression_phases_use_losses():
    # losses are interpolated in log: train loss 0.1 -> 1e-6 over steps 0 -> 10 reaches 1e-4
    # at 6; test loss 0.01 -> 5e-4 over steps 10 000 -> 20 000 reaches 0.01 * 0.08 at
    # 10 000 + 10 000 * ln(0.08) / ln(0.05)
    det = _feed(PhaseDetector(), _regression_curve())
    assert det.memorization_step == 6
    assert det.memorization_test_loss == 0.08  # the level at the memorization row
    grokked = 10_000 + 10_000 * math.log(0.08) / math.log(0.05)
    assert det.grokking_step == math.ceil(grokked)
    assert det.grokking_time == pytest.approx(LR * grokked)
    assert det.misgrokking_step is None  # not defined for regression
    loose = _feed(PhaseDetector(grokking_loss_ratio=0.2), _regression_curve())
    grokked = 1_000 + 9_000 * math.log(0.016 / 0.07) / math.log(0.01 / 0.07)
    assert loose.grokking_time == pytest.approx(LR * grokked)


def test_regression_without_memorization_finds_nothing():
    rows = [{"step": s, "time": LR * s, "train/loss": 0.05, "test/loss": 1e-9} for s in (1, 10)]
    det = _feed(PhaseDetector(), rows)
    assert det.memorization_step is None and det.grokking_step is None


def test_nan_accuracy_does_not_count():
    nan = float("nan")
    det = _feed(PhaseDetector(), [_row(0, nan, nan), _row(1, nan, nan)])
    assert det.memorization_step is None and det.grokking_step is None


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"memorization_threshold": 0.0}, "phases.memorization_threshold"),
        ({"memorization_threshold": -0.5}, "phases.memorization_threshold"),
        ({"memorization_threshold": 1.01}, "phases.memorization_threshold"),
        ({"grokking_threshold": 0.0}, "phases.grokking_threshold"),
        ({"grokking_threshold": 1.5}, "phases.grokking_threshold"),
    ],
)
def test_invalid_thresholds_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError) as info:
        PhaseDetector(**kwargs)
    assert key in str(info.value)


def _misgrokking_curve() -> list[dict[str, float]]:
    """E2-like: train and test accuracy high at once, test accuracy collapses much later."""
    test = {0: 0.5, 1: 0.97, 10: 0.99, 1_000: 0.99, 10_000: 0.9, 20_000: 0.55, 30_000: 0.5}
    return [
        {"step": s, "time": LR * s, "train/acc": 1.0 if s else 0.5, "test/acc": a}
        for s, a in test.items()
    ]


def test_misgrokking_is_the_first_fall_below_a_fraction_of_the_peak():
    det = _feed(PhaseDetector(), _misgrokking_curve())
    assert det.grokking_step == 1  # generalized as soon as it memorized
    # peak 0.99: 0.9 at 10 000 is above 0.6·0.99; 0.55 at 20 000 is below, crossed in between
    level = 0.6 * 0.99
    misgrokked = 10_000 + 10_000 * (0.9 - level) / 0.35
    assert det.misgrokking_step == math.ceil(misgrokked)
    assert det.misgrokking_time == pytest.approx(LR * misgrokked)
    custom = _feed(PhaseDetector(misgrokking_fraction=0.92), _misgrokking_curve())
    level = 0.92 * 0.99
    assert custom.misgrokking_time == pytest.approx(LR * (1_000 + 9_000 * (0.99 - level) / 0.09))


def test_misgrokking_needs_no_grokking_but_a_peak_above_the_minimum():
    """A test accuracy that peaked at 0.85 (never 0.95) and fell to 0.4 misgrokked; one that
    stayed near chance never does, however far it fell relative to its peak."""

    def rows(curve):
        return [{"step": s, "time": LR * s, "train/acc": 1.0, "test/acc": a} for s, a in curve]

    fell = _feed(PhaseDetector(), rows([(1, 0.5), (10, 0.85), (100, 0.7), (1_000, 0.4)]))
    assert fell.grokking_step is None
    assert fell.misgrokking_time == pytest.approx(LR * (100 + 900 * (0.7 - 0.51) / 0.3))
    chance = _feed(PhaseDetector(), rows([(1, 0.05), (10, 0.03), (100, 0.01)]))
    assert chance.misgrokking_step is None
    lower_bar = _feed(PhaseDetector(misgrokking_min_peak=0.04), rows([(1, 0.05), (10, 0.01)]))
    assert lower_bar.misgrokking_step == 6  # 0.6·0.05 crossed halfway from step 1 to 10


def test_misgrokking_state_survives_state_dict_round_trip():
    det = _feed(PhaseDetector(), _misgrokking_curve())
    fresh = PhaseDetector()
    fresh.load_state_dict(det.state_dict())
    assert fresh.summary() == det.summary() and fresh.misgrokking_step is not None


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"misgrokking_fraction": 0.0}, "phases.misgrokking_fraction"),
        ({"misgrokking_fraction": 1.0}, "phases.misgrokking_fraction"),
        ({"misgrokking_min_peak": 0.0}, "phases.misgrokking_min_peak"),
        ({"misgrokking_min_peak": 1.5}, "phases.misgrokking_min_peak"),
    ],
)
def test_misgrokking_settings_out_of_range_are_config_errors(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        PhaseDetector(**kwargs)


def test_crossing_is_interpolated_exactly_on_a_linear_ramp():
    # test accuracy rises linearly in time from 0.5 (t = 100) to 1.0 (t = 200): the 0.95
    # crossing is at t = 190, wherever the two evaluation rows bracketing it fall
    rows = [_row(0, 0.5, 0.5), _row(1, 1.0, 0.5), _row(10_000, 1.0, 0.5), _row(20_000, 1.0, 1.0)]
    det = _feed(PhaseDetector(), rows)
    assert det.grokking_time == pytest.approx(190.0)
    assert det.grokking_step == 19_000


def test_first_crossing_of_rows_read_back_interpolates_and_skips_missing_values():
    # test accuracy rises linearly from 0.2 at t = 100 to 0.8 at t = 200: 50% at t = 150; a row
    # without the value (NaN, an empty cell read back) is skipped, not taken as a crossing;
    # a run that starts at or above the level has no rise through it
    rows = [
        {"step": 0, "time": 0.0, "test/acc": 0.1},
        {"step": 5, "time": 100.0, "test/acc": 0.2},
        {"step": 7, "time": 150.0, "test/acc": math.nan},
        {"step": 10, "time": 200.0, "test/acc": 0.8},
        {"step": 20, "time": 300.0, "test/acc": 0.4},
    ]
    assert first_crossing(rows, "test/acc", 0.5) == (8, pytest.approx(150.0))
    assert first_crossing(rows, "test/acc", 0.9) is None
    assert first_crossing([], "test/acc", 0.5) is None
    assert first_crossing(rows[3:], "test/acc", 0.5) is None
