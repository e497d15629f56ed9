"""The numpy HOG people detector against OpenCV 4's own: the descriptor of a window and the SVM
score of every window (8-pixel stride, 8 pixels of padding) on a crop of OpenCV's vtest.avi. The
reference is OpenCV 4.10's output stored in data/hog_reference.npz (hog_reference.py wrote it);
where the installed OpenCV still has HOGDescriptor, it is checked against that too."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from art_edge.video import hog
from art_edge.video.detect import open_detector

REFERENCE = np.load(Path(__file__).with_name("data") / "hog_reference.npz")


def test_the_descriptor_is_opencv_4s():
    window = REFERENCE["window"]
    blocks = hog.block_histograms(hog.gradients(window, 0))
    ours = blocks.transpose(1, 0, 2).reshape(-1)  # a window's blocks, x major
    np.testing.assert_allclose(ours, REFERENCE["descriptor"], atol=1e-3)


def test_every_window_scores_as_in_opencv_4():
    found = hog.HogPeople(threshold=-3.0).detect_level(REFERENCE["image"])
    ours = {(int(b[0]), int(b[1])): float(b[4]) for b in found}
    theirs = {
        (int(x), int(y)): float(s) for (x, y), s in zip(REFERENCE["found"], REFERENCE["scores"])
    }
    assert len(theirs) > 20
    # the same windows over the threshold (one may sit within the float noise of it)
    assert len(set(ours) ^ set(theirs)) <= 1
    for key in set(ours) & set(theirs):
        assert ours[key] == pytest.approx(theirs[key], abs=5e-3)


@pytest.mark.skipif(
    not hasattr(cv2, "HOGDescriptor"), reason="this OpenCV (5) has no HOGDescriptor to compare with"
)
def test_the_installed_opencv_agrees():
    d = cv2.HOGDescriptor()
    window = REFERENCE["window"]
    np.testing.assert_allclose(
        hog.block_histograms(hog.gradients(window, 0)).transpose(1, 0, 2).reshape(-1),
        d.compute(window).ravel(),
        atol=1e-3,
    )


def test_the_detector_finds_the_people_in_the_crop():
    image = cv2.cvtColor(REFERENCE["image"], cv2.COLOR_GRAY2RGB)
    boxes = open_detector("hog").detect(image)
    assert len(boxes) >= 1
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
