"""The image encoder's modality figure on unseen scanners: acquisitions grouped, the reference
balanced, modalities weighed equally (models/training/evaluate_image_modality.py)."""

from __future__ import annotations

import sys

import numpy as np

from tests.core.test_image_ai_helpers import REPO

sys.path.insert(0, str(REPO / "models" / "training"))
import evaluate_image_modality as evaluation  # noqa: E402  (models/training)


def _image(seed, shape=(40, 56)):
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


def test_re_encodings_crops_and_flips_of_one_image_are_one_acquisition():
    a, b, c = _image(1), _image(2), _image(3)
    thumbs = [evaluation.thumbnail(p) for p in (a, a[:, ::-1], b, c, a[::-1, :], b)]
    # c carries b's SOP Instance UID (a re-encoding with different pixels, e.g. a crop)
    uids = ["1.2.1", "1.2.2", "1.2.3", "1.2.3", "", ""]
    group = evaluation.group_acquisitions(uids, thumbs)
    assert group[0] == group[1] == group[4]  # flips of a
    assert group[2] == group[3] == group[5]  # b by UID and by pixels; c by UID only
    assert group[0] != group[2]
    # empty UIDs are no evidence of sameness
    assert len(set(evaluation.group_acquisitions(["", ""], [evaluation.thumbnail(a), evaluation.thumbnail(b)]))) == 2


def test_the_reference_is_balanced_over_labels_and_even_over_acquisitions():
    # label 0: 1,000 items in 2 acquisitions (900 + 100); label 1: 7 items in one acquisition
    labels = np.array([0] * 1000 + [1] * 7)
    acquisitions = np.array([0] * 900 + [1] * 100 + [2] * 7)
    ref = evaluation.balanced_reference(labels, acquisitions, per_class=50, seed=0)
    assert (labels[ref] == 0).sum() == 50 and (labels[ref] == 1).sum() == 50
    zero = ref[labels[ref] == 0]
    assert len(set(zero)) == 50 and abs((acquisitions[zero] == 0).sum() - 25) <= 1  # even, not 45/5
    one = np.bincount(ref[labels[ref] == 1] - 1000, minlength=7)
    assert one.max() - one.min() <= 1  # the small class repeats each item about equally
    again = evaluation.balanced_reference(labels, acquisitions, per_class=50, seed=0)
    assert np.array_equal(ref, again)  # the same images for every encoder


def test_modalities_weigh_equally_and_duplicates_count_once():
    # modality 0: six encodings of one image (one acquisition, all right) + one other (wrong);
    # modality 1: one acquisition, wrong
    correct = np.array([1, 1, 1, 1, 1, 1, 0, 0], bool)
    acquisition = np.array([0, 0, 0, 0, 0, 0, 1, 2])
    scores = evaluation.acquisition_scores(correct, acquisition)
    value, per = evaluation.balanced_accuracy(scores, {0: 0, 1: 0, 2: 1})
    assert per == {0: 0.5, 1: 0.0} and value == 0.25  # per file it would read 6/8 = 0.75
    low, high = evaluation.bootstrap_ci(scores, {0: 0, 1: 0, 2: 1}, draws=500)
    assert 0.0 <= low <= value <= high <= 0.5


def test_the_held_out_files_group_into_their_acquisitions():
    _, owner, files = evaluation.held_out_frames()
    group = evaluation.group_acquisitions([f["uid"] for f in files], [f["thumbnail"] for f in files])
    by_name = {f["name"]: g for f, g in zip(files, group)}
    small = {by_name[n] for n in by_name if n.startswith("MR_small_")}
    assert len(small) == 1 and len([n for n in by_name if n.startswith("MR_small_")]) == 6
    assert by_name["US_palette_cropped.dcm"] == by_name["US_palette_rle.dcm"]
    assert by_name["MR_enhanced_10f.dcm"] == by_name["MR_enhanced_10f_RLE.dcm"]
    assert len({by_name[n] for n in by_name if n.startswith("CT_")}) == 4  # four different CT images
    assert len(owner) > len(files)  # every frame of the multi-frame files, not the first only


def test_no_extra_training_frame_is_a_held_out_image():
    """The extra CT/MR set (build_extra_images.py) holds no frame that shows a held-out image,
    and its check does catch one (a held-out frame, a flip and a re-windowing of it)."""
    import build_extra_images  # noqa: PLC0415  (models/training)

    held = build_extra_images.HeldOut()
    frames, _, files = evaluation.held_out_frames()
    sample = frames[[f["name"] for f in files].index("CT_small.dcm")]
    assert held.matches(sample) and held.matches(sample[:, ::-1].copy())
    assert held.matches((np.clip(sample.astype(float) * 1.3 - 20, 0, 255)).astype(np.uint8))
    with np.load(build_extra_images.OUT) as extra:
        images, modality = extra["images"], extra["modality"]
    thumbs = np.stack([evaluation.thumbnail(p).ravel() for p in images])
    assert (thumbs @ held.thumbs.T / thumbs.shape[1]).max() < evaluation.SAME_IMAGE_CORRELATION
    assert np.bincount(modality, minlength=4)[2:].min() >= 300  # CT and MR, what 1.0.0 lacked
