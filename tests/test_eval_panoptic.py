"""PQ, mIoU and mask AP on hand-computed cases; the post-processing against the dense
Mask2Former formulas."""

import numpy as np
import pytest

from osprey.eval.panoptic_metrics import (
    ConfusionMatrix,
    MaskAP,
    PanopticQuality,
    id2rgb,
    instance_inference,
    mask_class_probs,
    panoptic_inference,
    rgb2id,
    semantic_inference,
)


def test_rgb2id_round_trip():
    ids = np.array([[0, 1, 256], [65536, 7 + 256 * 3 + 65536 * 200, 16777215]])
    rgb = id2rgb(ids)
    assert (
        rgb.dtype == np.uint8
        and rgb[0, 1].tolist() == [1, 0, 0]
        and rgb[0, 2].tolist() == [0, 1, 0]
    )
    assert np.array_equal(rgb2id(rgb), ids)


def _pq_case():
    gt = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 0], [3, 3, 3, 0]])
    pred = np.array([[1, 1, 1, 2], [1, 1, 1, 2], [3, 3, 3, 3], [3, 3, 3, 3]])
    gt_segments = {1: (0, False), 2: (1, False), 3: (2, False)}
    return gt, gt_segments, pred, {1: 0, 2: 1, 3: 2}


def test_pq_hand_computed():
    # seg 1: IoU 4/6 -> TP; seg 2: IoU 2/4 = 0.5, not > 0.5 -> FN + FP;
    # seg 3: the two GT-void pixels are left out of the union -> IoU 6/6 -> TP.
    pq = PanopticQuality(things={0})
    pq.update(*_pq_case())
    out = pq.summary()
    assert out["PQ"] == pytest.approx(100 * (2 / 3 + 0 + 1) / 3)
    assert out["SQ"] == pytest.approx(100 * (2 / 3 + 0 + 1) / 3)
    assert out["RQ"] == pytest.approx(100 * (1 + 0 + 1) / 3)
    assert out["PQ_th"] == pytest.approx(100 * 2 / 3)
    assert out["PQ_st"] == pytest.approx(100 * 0.5)


def test_pq_crowd_and_void_predictions_are_not_false_positives():
    pq = PanopticQuality(things={0})
    pq.update(*_pq_case())
    before = pq.summary()
    gt = np.array([[5, 5, 0, 0], [5, 5, 0, 0]])
    pred = np.array([[1, 1, 1, 2], [1, 1, 1, 2]])
    # pred 1 (class 0) lies on a class-0 crowd region and void; pred 2 (class 1) only on void
    pq.update(gt, {5: (0, True)}, pred, {1: 0, 2: 1})
    assert pq.summary() == before
    pq.update(gt, {5: (0, True)}, pred, {1: 2, 2: 1})  # now pred 1 has another class: an FP
    assert pq.stats[2].fp == 1


def test_miou_hand_computed():
    conf = ConfusionMatrix(num_classes=3)
    conf.update(np.array([[0, 1, 1, 2, 2]]), np.array([[0, 0, 1, 255, 0]]))
    out = conf.summary()
    # class 0: tp 1, union 3; class 1: tp 1, union 2; class 2 has no ground truth: left out
    assert out["mIoU"] == pytest.approx(100 * (1 / 3 + 1 / 2) / 2)
    assert out["pACC"] == pytest.approx(50.0)


def _boxes(h=20, w=20):
    a = np.zeros((h, w), bool)
    a[2:8, 2:8] = True
    b = np.zeros((h, w), bool)
    b[10:18, 5:15] = True
    return a, b


def test_mask_ap_perfect_and_half():
    a, b = _boxes()
    ap = MaskAP(thing_classes=[5, 6])
    img = ap.add_image(20, 20)
    ap.add_gt(img, a, 5)
    ap.add_gt(img, b, 5)
    ap.add_detection(img, a, 5, 0.9)
    ap.add_detection(img, b, 5, 0.8)
    assert ap.summary()["AP"] == pytest.approx(100.0)

    ap = MaskAP(thing_classes=[5, 6])
    img = ap.add_image(20, 20)
    ap.add_gt(img, a, 5)
    ap.add_gt(img, b, 5)
    ap.add_detection(img, a, 5, 0.9)
    ap.add_detection(img, b, 6, 0.8)  # wrong class: class 5 reaches recall 0.5 at precision 1
    # 101-point interpolation: precision 1 at recall 0, 0.01, ..., 0.50 and 0 above;
    # class 6 has no ground truth and is left out of the mean
    assert ap.summary()["AP"] == pytest.approx(100 * 51 / 101)


def _dense_reference(labels, cos, things):
    """The reference's formulas on a dense (Q, H, W) mask stack."""
    q = cos.shape[0]
    masks = np.stack([(labels == i).astype(float) for i in range(q)])
    p = np.exp(cos) / np.exp(cos).sum(1, keepdims=True)
    mask_cls = np.log(np.concatenate([p, np.zeros((q, 1))], 1) + 1e-8)
    probs = np.exp(mask_cls) / np.exp(mask_cls).sum(1, keepdims=True)
    sem = np.einsum("qc,qhw->chw", probs[:, :-1], masks).argmax(0)
    scores, cls = probs.max(1), probs.argmax(1)
    keep = (cls != cos.shape[1]) & (scores > 0)
    cur_masks, cur_cls = masks[keep], cls[keep]
    ids = (scores[keep][:, None, None] * cur_masks).argmax(0)
    pan, segs, stuff = np.zeros(labels.shape, int), [], {}
    for k in range(len(cur_cls)):
        c = int(cur_cls[k])
        mask = (ids == k) & (cur_masks[k] >= 0.5)
        area, orig = (ids == k).sum(), (cur_masks[k] >= 0.5).sum()
        if area == 0 or orig == 0 or mask.sum() == 0 or area / orig < 0.8:
            continue
        if c not in things and c in stuff:
            pan[mask] = stuff[c]
            continue
        if c not in things:
            stuff[c] = len(segs) + 1
        pan[mask] = len(segs) + 1
        segs.append({"id": len(segs) + 1, "category_id": c, "isthing": c in things})
    return probs, sem, pan, segs


def test_post_processing_equals_the_dense_formulas():
    rng = np.random.default_rng(0)
    labels = rng.integers(-1, 6, size=(12, 16))
    labels[0, 0] = 5  # every query has pixels
    cos = rng.uniform(-0.2, 0.9, size=(6, 4))
    cos[1] = cos[4] = [0.0, 0.1, 0.9, 0.0]  # two queries of stuff class 2: merged into one segment
    things = {0, 1}
    probs_ref, sem_ref, pan_ref, segs_ref = _dense_reference(labels, cos, things)
    probs = mask_class_probs(cos)
    np.testing.assert_allclose(probs, probs_ref, rtol=1e-10)
    assert np.array_equal(semantic_inference(labels, probs), sem_ref)
    pan, segs = panoptic_inference(labels, probs, things)
    assert np.array_equal(pan, pan_ref) and segs == segs_ref
    assert len(segs) == 5 and pan[labels == 1].max() == pan[labels == 4].max()
    picks = instance_inference(probs, things, top_k=10)
    flat = probs[:, :-1].ravel()
    top = set(np.argsort(-flat)[:10])
    assert {q * 4 + c for q, c, _ in picks} == {i for i in top if i % 4 in things}
