"""The joint reader's model card (``README.md`` of its folder), written from the measured figures."""
from __future__ import annotations

from typing import Any


def card(m: dict[str, Any], command: str) -> str:
    """A short model card: what it is, that it is phantom-trained, how it was made, what was measured."""
    ext, ph = m["external"], m["external_phone"]
    g, loc = ext["grading"], ext["localisation"]
    p13, p4 = ph["levels_1_3"], ph["level_4"]
    th = m["confidence_threshold"]
    return f"""---
license: apache-2.0
tags: [as-ai, ankylosing-spondylitis, sacroiliitis, pelvic-radiograph, synthetic-data]
---

# as-ai joint reader (phantom-trained demo)

Finds both sacroiliac joints on an AP pelvic radiograph (a small heatmap CNN on the whole image, short edge
{m['config']['short_edge']} px), grades each side 0-4 on the modified New York scale (an ordinal CNN with
cumulative logits on the joint's native-resolution crop, {m['config']['crop'][0]}x{m['config']['crop'][1]} px,
the patient's right joint mirrored; temperature-calibrated), and derives P(modified New York criterion met)
from the two grade distributions by the rule (both sides >= 2 or one >= 3).

**Trained on synthetic phantom radiographs only (`as_ai.synthetic`). For demonstration and research; not a
medical device, not for clinical use.** Sides are the patient's: *left* is on the image's right.

## How it was made

```bash
as-ai synth pxr --out runs/joints-data --n 1000 --n-external 600 --seed 0 --size 512 --workers 2
{command}
```

## Measured (external centres B-D, true grades; predicted boxes)

| figure | value |
|---|---|
| joint boxes IoU >= 0.5 vs the anatomical box, clean ({loc['n_joints']} joints) | {loc['vs_anatomical_box']['iou50_rate']:.4f} |
| joint boxes IoU >= 0.5 vs the anatomical box, phone photos levels 1-3 ({p13['localisation']['n_joints']} joints) | {p13['localisation']['vs_anatomical_box']['iou50_rate']:.4f} |
| joint boxes IoU >= 0.5 vs the anatomical box, phone photos level 4 ({p4['localisation']['n_joints']} joints) | {p4['localisation']['vs_anatomical_box']['iou50_rate']:.4f} |
| joint boxes IoU >= 0.5 vs the stored ROI (clean / phone 1-3 / phone 4) | {loc['iou50_rate']:.4f} / {p13['localisation']['iou50_rate']:.4f} / {p4['localisation']['iou50_rate']:.4f} |
| centre error, clean (median / 95th percentile, mm) | {loc.get('centre_error_mm_median')} / {loc.get('centre_error_mm_p95')} |
| per-side quadratic-weighted kappa vs true grade | {g['qwk']['both']:.4f} (left {g['qwk']['left']:.4f}, right {g['qwk']['right']:.4f}) |
| per-side exact accuracy | {g['exact_accuracy']['both']:.4f} |
| grade probabilities: top-label ECE, clean / phone levels 1-3 (temperature {m.get('temperature', float('nan')):.3f}) | {g.get('grade_top_label_ece', float('nan')):.4f} / {p13['grading'].get('grade_top_label_ece', float('nan')):.4f} |
| simulated reference reader vs truth: QWK / exact accuracy (the ceiling) | {g['reader']['qwk_vs_true']['both']:.4f} / {g['reader']['exact_accuracy_vs_true']:.4f} |
| P(mNY) AUC vs true label, clean (95 % CI) | {g['mny']['auc_vs_true'][1]:.4f} ({g['mny']['auc_vs_true'][0]:.4f}-{g['mny']['auc_vs_true'][2]:.4f}) |
| P(mNY) ECE vs true label, clean | {g['mny']['ece_vs_true']:.4f} |
| P(mNY) AUC vs true label, phone levels 1-3 | {p13['grading']['mny']['auc_vs_true'][1]:.4f} |
| per-side QWK, phone levels 1-3 / level 4 | {p13['grading']['qwk']['both']:.4f} / {p4['grading']['qwk']['both']:.4f} |

The stored ROI (`meta["rois"]`) is the joint's lesion support plus the centre's detector-blur margin (5 px at
the training centre A, 6 / 20 / 30 px at B / C / D), so at C and D it is far wider than the joint; the
anatomical box removes that margin and adds the training centre's (3.4 mm). By centre, IoU >= 0.5 vs the
stored ROI: {", ".join(f"{c} {v['localisation']['iou50_rate']:.3f}" for c, v in m['external_by_centre'].items())};
vs the anatomical box: {", ".join(f"{c} {v['localisation']['vs_anatomical_box']['iou50_rate']:.3f}" for c, v in m['external_by_centre'].items())}.

Confusion of grades, clean external (rows true 0-4, columns predicted 0-4): `{g['confusion_vs_true']}`.

A joint counts as *not found* when the localiser's confidence is below {th['min_confidence']} (midway between
the validation phantoms' 1st percentile and the 95th percentile of half of the out-of-distribution set of
`train/_ood.py`: other body parts, other modalities, photos, screenshots, blanks, noise). It keeps
{th['in_distribution_kept']:.3f} of the validation phantoms (clean and phone levels 1-3) and
{loc['found_rate']:.3f} of the external joints, and rejects {th.get('ood_rejected_held_out', float('nan')):.3f} of
the held-out OOD half ({th['n_ood']} OOD images in all).
"""
