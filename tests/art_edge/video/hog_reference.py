"""Writes data/hog_reference.npz: OpenCV 4's own HOG descriptor and people-detector window scores
on a crop of OpenCV's vtest.avi, for test_hog.py to hold art_edge.video.hog to on machines whose
OpenCV (5) has no HOGDescriptor. Run with an OpenCV 4 (4.10 made the file in the repository):

    pip install --target /tmp/cv4 opencv-python-headless==4.10.0.84
    PYTHONPATH=/tmp/cv4 python tests/art_edge/video/hog_reference.py
"""

from pathlib import Path

import cv2
import numpy as np

VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def main():
    assert hasattr(cv2, "HOGDescriptor"), "needs an OpenCV with HOGDescriptor (4.x)"
    cap = cv2.VideoCapture(VTEST)
    for _ in range(30):
        ok, frame = cap.read()
    image = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)[120:376, 250:442].copy()  # 192 × 256
    hog = cv2.HOGDescriptor()
    window = image[40:168, 60:124].copy()
    descriptor = hog.compute(window).ravel()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    found, scores = hog.detect(image, hitThreshold=-3.0, winStride=(8, 8), padding=(8, 8))
    out = Path(__file__).with_name("data") / "hog_reference.npz"
    np.savez_compressed(out, image=image, window=window, descriptor=descriptor,
                        found=found.reshape(-1, 2), scores=scores.ravel(), version=cv2.__version__)  # fmt: skip
    print(f"wrote {out}: {len(found)} windows above -3")


if __name__ == "__main__":
    main()
