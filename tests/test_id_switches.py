import numpy as np

from vidseg.evaluation.id_switches import IdSwitchCount, count_id_switches


def _box(x0, x1, shape=(8, 12)):
    m = np.zeros(shape, bool)
    m[2:6, x0:x1] = True
    return m


def test_consistent_tracks_have_no_switch_and_swaps_count_once_per_object():
    a, b = _box(0, 4), _box(6, 10)
    gt = [{1: a, 2: b}] * 4
    same = [{7: a, 9: b}] * 4
    assert count_id_switches(gt, same) == IdSwitchCount(0, 8, 8)
    swapped = [{7: a, 9: b}, {7: a, 9: b}, {9: a, 7: b}, {9: a, 7: b}]
    assert count_id_switches(gt, swapped).switches == 2


def test_unmatched_frames_keep_the_last_identity():
    a = _box(0, 4)
    gt = [{1: a}, {1: a}, {1: a}]
    pred = [{5: a}, {}, {5: a}]
    c = count_id_switches(gt, pred)
    assert (c.switches, c.matched, c.objects) == (0, 2, 3)
    pred_low_iou = [{5: a}, {6: _box(3, 8)}, {5: a}]  # IoU 1/8 < 0.5: not a match, not a switch
    assert count_id_switches(gt, pred_low_iou).switches == 0


def test_totals_add_up():
    assert IdSwitchCount(1, 2, 3) + IdSwitchCount(4, 5, 6) == IdSwitchCount(5, 7, 9)
