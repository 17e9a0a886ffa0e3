"""The measures of evaluation: angle errors with yaw wrap-around, per-axis summaries, detection AP, tables."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from training.metrics import angle_errors, ap_table, average_precision, pose_table, summary


def test_yaw_wraps_around_but_pitch_and_roll_do_not():
    e = angle_errors(np.array([[170.0, 80.0, 170.0]]), np.array([[-170.0, -80.0, -170.0]]))
    assert e.tolist() == [[20.0, 160.0, 340.0]]


def test_summary_means_each_axis():
    s = summary(np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]]))
    assert s == {"yaw": 2.0, "pitch": 3.0, "roll": 4.0, "mean": 3.0, "faces": 2}
    assert summary(np.zeros((0, 3)))["faces"] == 0


def test_average_precision_on_hand_made_detections():
    truth = {0: (np.array([[0.0, 0, 10, 10], [20, 20, 30, 30]]), np.array([False, False])),
             1: (np.array([[0.0, 0, 10, 10], [50, 50, 52, 52]]), np.array([False, True]))}
    perfect = [(0.9, 0, np.array([0.0, 0, 10, 10])), (0.8, 0, np.array([20.0, 20, 30, 30])),
               (0.7, 1, np.array([0.0, 0, 10, 10]))]
    assert average_precision(perfect, truth) == pytest.approx(1.0)
    # a detection on an ignored face counts neither way
    assert average_precision(perfect + [(0.95, 1, np.array([50.0, 50, 52, 52]))], truth) == pytest.approx(1.0)
    # a confident false positive first: precision 1/2, 2/3, 3/4 at recall 1/3, 2/3, 1; all-point
    # interpolation takes the best precision at any higher recall, 3/4, at every step
    with_fp = [(0.99, 0, np.array([100.0, 100, 110, 110]))] + perfect
    assert average_precision(with_fp, truth) == pytest.approx(3 / 4)
    # the same false positive last costs nothing: every face is found at precision 1 first
    assert average_precision(perfect + [(0.1, 0, np.array([100.0, 100, 110, 110]))], truth) == pytest.approx(1.0)
    # a duplicate of a found face is a false positive; a missed face caps recall
    assert average_precision(perfect[:2], truth) == pytest.approx(2 / 3)


def test_tables_render_each_row():
    row = {"yaw": 1.234, "pitch": 2.0, "roll": 3.0, "mean": 2.078, "faces": 7}
    table = pose_table([("FPNet", row)])
    assert table.splitlines() == ["| model | yaw | pitch | roll | mean | faces |", "|---|---|---|---|---|---|",
                                  "| FPNet | 1.23 | 2.00 | 3.00 | **2.08** | 7 |"]
    assert pose_table([("FPNet", row)], faces=False).splitlines()[2] == "| FPNet | 1.23 | 2.00 | 3.00 | **2.08** |"
    assert ap_table([("O-Net", 0.80759)]).splitlines()[-1] == "| O-Net | 0.8076 |"


def test_near_profile_a_small_rotation_error_is_a_large_pitch_and_roll_error():
    """``geodesic_errors`` measures the rotation itself: at 85 degrees of yaw a rotation 3 degrees off the true one
    about the camera's axis reads as pitch and roll errors of tens of degrees, and ``by_yaw`` keeps both."""
    from facepose.rotation import euler_to_matrix, matrix_to_euler
    from training.evaluate import by_yaw
    from training.metrics import geodesic_errors

    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    truth = np.array([[85.0, 10.0, 5.0], [10.0, 0.0, 0.0]])
    turn = euler_to_matrix(t(0.0), t(0.0), t(3.0))  # 3 degrees about the camera's z axis
    found = turn @ euler_to_matrix(t(*truth[:, 0]), t(*truth[:, 1]), t(*truth[:, 2]))
    geodesic = geodesic_errors(found.numpy(), truth)
    assert geodesic == pytest.approx([3.0, 3.0], abs=1e-6)
    errors = angle_errors(matrix_to_euler(found).numpy(), truth)
    assert errors[0, 1] > 10 and errors[0, 2] > 10 and errors[1, 1:].max() < 3.5, errors
    rows = by_yaw(truth, errors, [0, 1], {}, 0.7, geodesic)["table"]
    assert [r["geodesic"] for r in rows if r["found"]] == pytest.approx([3.0, 3.0])
