"""``report.md`` of the external evaluation: the numbers of ``metrics.json`` written as a results section."""
from __future__ import annotations

from typing import Any, Mapping

from as_ai.diagnosis import SOFTNESS_CAUTION_RISE

_TRUTH_TEXT = {"true": "the true grades (modified New York criterion applied to the phantom's known grades)",
               "reference": "the reference reader's labels"}
_OTHER = {"true": "reference", "reference": "true"}
_OTHER_TEXT = {"true": "the true grades", "reference": "the reference reader's labels"}


def _f(v: Any, nd: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}"


def _pct(v: Any) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _auc(a: Mapping[str, Any] | None) -> str:
    """'0.962 (95 % CI 0.944–0.980)'."""
    if not a:
        return "n/a (too few cases of a class)"
    return f"{a['auc']:.3f} (95 % CI {a['low']:.3f}–{a['high']:.3f})" if abs(a["level"] - 0.95) < 1e-9 else \
        f"{a['auc']:.3f} ({100 * a['level']:g} % CI {a['low']:.3f}–{a['high']:.3f})"


def _list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def headline(m: Mapping[str, Any]) -> str:
    """One line with the main numbers (printed by the command line)."""
    o = m["overall"]
    parts = [f"external AUC {_auc(o['auc'])} vs {m['truth']} labels", f"precision {_f(o['precision'])}",
             f"recall {_f(o['recall'])}", f"F1 {_f(o['f1'])}", f"ECE {_f(o['ece'])}"]
    if m.get("ensemble_vs_best"):
        parts.append(f"vs best member {m['best_member']}: p {_p(m['ensemble_vs_best']['p'])}")
    ph = m.get("phone") or {}
    if "auc_drop" in ph:
        parts.append(f"phone AUC {_f(ph['phone']['auc']['auc'])} (drop {ph['auc_drop']:+.3f})")
    return "; ".join(parts)


def render_report(m: Mapping[str, Any]) -> str:
    """The Markdown report of an evaluation's metrics (as built by ``train.evaluate``)."""
    truth, o = m["truth"], m["overall"]
    other = _OTHER[truth]
    model = m.get("model", {})
    lines = [f"# External evaluation of the diagnosis ensemble", ""]
    if model.get("synthetic") or m.get("data", {}).get("synthetic"):
        lines += ["> **Synthetic data.** The model was trained, and is evaluated here, on phantom radiographs from "
                  "the as-ai data engine, not on patients. These numbers describe the method on phantoms; they are "
                  "not clinical evidence. Research use only.", ""]
    lines += [f"Model: `{model.get('provenance', '?')}` ({len(model.get('members', {}))} "
              f"member{'s' if len(model.get('members', {})) != 1 else ''}: "
              + ", ".join(f"{n} = `{a}`" for n, a in model.get("members", {}).items())
              + f"; combine `{model.get('combine', '?')}`, calibration `{model.get('calibration', {}).get('method', '?')}`, "
              f"decision threshold {m['threshold']:.3f}).  ",
              f"Data: `{m.get('data', {}).get('clean', '?')}`"
              + (f", phone photos `{m['data']['phone']}`" if m.get("data", {}).get("phone") else "") + ".", ""]

    # -- overall
    centres = m.get("centres_list", [])
    lines += ["## Results", "", "### Diagnostic performance on the external test set", ""]
    text = (f"The ensemble was evaluated on {m['n']} external radiographs from "
            f"{'centre' if len(centres) == 1 else 'centres'} {_list(centres)}, {m['n_as']} of them AS "
            f"({_pct(m['n_as'] / m['n'])}) by {_TRUTH_TEXT[truth]}. "
            f"It reached an AUC of {_auc(o['auc'])}. At its stored decision threshold of {m['threshold']:.3f} the "
            f"precision was {_f(o['precision'])}, recall (sensitivity) {_f(o['recall'])}, specificity "
            f"{_f(o['specificity'])}, F1 {_f(o['f1'])} and accuracy {_f(o['accuracy'])}; the expected calibration "
            f"error (10 bins) was {_f(o['ece'])}.")
    ov = m.get(f"overall_vs_{other}")
    if ov:
        text += (f" Against {_OTHER_TEXT[other]} the AUC was {_auc(ov['auc'])} (precision {_f(ov['precision'])}, "
                 f"recall {_f(ov['recall'])}, F1 {_f(ov['f1'])})")
        la = m.get("label_agreement")
        text += (f"; the two label sets agree with κ = {la['kappa']:.3f} ({la['band']})." if la else ".")
    if m.get("abstained"):
        text += (f" The input gate judged {m['abstained']} image(s) unlike the training data (label "
                 "\"indeterminate\"); they are scored here by their probability all the same")
        acc = m.get("accepted_only")
        text += (f"; on the {acc['n']} accepted images alone the AUC was {_auc(acc['auc'])}." if acc else ".")
    lines += [text, ""]
    rows = [("AUC (95 % CI)", lambda r: _auc(r["auc"])), ("Precision", lambda r: _f(r["precision"])),
            ("Recall / sensitivity", lambda r: _f(r["recall"])), ("Specificity", lambda r: _f(r["specificity"])),
            ("F1", lambda r: _f(r["f1"])), ("Accuracy", lambda r: _f(r["accuracy"])), ("ECE", lambda r: _f(r["ece"])),
            ("TN / FP / FN / TP", lambda r: " / ".join(str(r["confusion"][k]) for k in ("tn", "fp", "fn", "tp")))]
    head = f"| Measure | vs {truth} labels |" + (f" vs {other} labels |" if ov else "")
    lines += [head, "|---|---|" + ("---|" if ov else "")]
    for name, fn in rows:
        lines.append(f"| {name} | {fn(o)} |" + (f" {fn(ov)} |" if ov else ""))
    lines.append("")

    # -- per centre
    lines += ["### Per centre", "",
              "| Centre | n | AS | AUC (95 % CI) | Sensitivity | Specificity | Accuracy | F1 | ECE |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c, r in m["centres"].items():
        lines.append(f"| {c} | {r['n']} | {r['n_as']} | {_auc(r['auc'])} | {_f(r['recall'])} | "
                     f"{_f(r['specificity'])} | {_f(r['accuracy'])} | {_f(r['f1'])} | {_f(r['ece'])} |")
    aucs = {c: r["auc"]["auc"] for c, r in m["centres"].items() if r["auc"]}
    if len(aucs) > 1:
        lo, hi = min(aucs, key=aucs.get), max(aucs, key=aucs.get)
        lines += ["", f"AUC ranged from {aucs[lo]:.3f} (centre {lo}) to {aucs[hi]:.3f} (centre {hi})."]
    lines.append("")

    # -- members
    if m.get("members"):
        best, vs = m["best_member"], m["ensemble_vs_best"]
        lines += ["### Ensemble versus its members", ""]
        verdict = ("not significantly different from" if vs["p"] >= 0.05 else
                   ("significantly higher than" if vs["difference"] > 0 else "significantly lower than"))
        lines += [f"The ensemble's AUC ({vs['auc_a']:.3f}) was {verdict} that of its best member, `{best}` "
                  f"({vs['auc_b']:.3f}): difference {vs['difference']:+.3f} (95 % CI {vs['ci'][0]:+.3f} to "
                  f"{vs['ci'][1]:+.3f}), paired DeLong z = {vs['z']:.2f}, p = {_p(vs['p'])}.", "",
                  "| Model | AUC (95 % CI) | Ensemble − model | DeLong p |", "|---|---|---|---|",
                  f"| **ensemble** | {_auc(o['auc'])} | – | – |"]
        for n, r in sorted(m["members"].items(), key=lambda kv: -(kv[1]["auc"] or {"auc": 0})["auc"]):
            d = r["vs_ensemble"]
            lines.append(f"| {n} (`{model.get('members', {}).get(n, '?')}`) | {_auc(r['auc'])} | "
                         f"{d['difference']:+.3f} | {_p(d['p'])} |")
        lines += ["", "Member AUCs use each member's own (uncalibrated) probability; AUC depends only on ranks.", ""]

    # -- phone
    ph = m.get("phone")
    if ph:
        lines += ["### Smartphone photographs of the external radiographs", ""]
        if "auc_drop" not in ph:
            lines += [f"{ph['n']} photos were matched to their clean images; {ph.get('note', '')}.", ""]
        else:
            d = ph["delong_clean_vs_phone"]
            lines += [f"On {ph['n']} simulated smartphone photos of the external radiographs shown on a monitor "
                      f"(matched one to one to their clean images), the ensemble reached an AUC of "
                      f"{_auc(ph['phone']['auc'])}, against {_auc(ph['clean']['auc'])} on the same images taken "
                      f"directly: a drop of {ph['auc_drop']:.3f} (95 % CI of the difference {d['ci'][0]:.3f} to "
                      f"{d['ci'][1]:.3f}; paired DeLong p = {_p(d['p'])}). On the photos, precision was "
                      f"{_f(ph['phone']['precision'])}, recall {_f(ph['phone']['recall'])}, F1 "
                      f"{_f(ph['phone']['f1'])} and ECE {_f(ph['phone']['ece'])}; {ph['label_flips']} of "
                      f"{ph['n']} decisions changed between the clean image and its photo (mean absolute change of "
                      f"probability {ph['mean_abs_prob_change']:.3f})."
                      + (f" The input gate abstained on {ph['abstained']} photo(s)" + (
                          f"; on the {ph['phone_accepted_only']['n']} accepted photos the AUC was "
                          f"{_auc(ph['phone_accepted_only']['auc'])}." if ph.get("phone_accepted_only") else ".")
                         if ph["abstained"] else "")
                      + (f" {ph['n_unmatched']} photo(s) had no clean twin and were left out."
                         if ph["n_unmatched"] else ""), ""]
            if ph.get("levels"):
                lines += ["| Photo severity level | n | AS | AUC photo | AUC clean |", "|---|---|---|---|---|"]
                for lvl, r in ph["levels"].items():
                    lines.append(f"| {lvl} | {r['n']} | {r['n_as']} | {_auc(r['phone_auc'])} | {_auc(r['clean_auc'])} |")
                lines.append("")

    # -- softness
    so = m.get("softness")
    if so and len(so["rows"]) > 1:
        base, soft = so["rows"][0], so["rows"][-1]
        lines += ["### Softer images", "",
                  f"The same {so['n']} clean external radiographs, read again after a Gaussian blur ({so['unit']}). "
                  "Blurred joint margins are a sign of early sacroiliitis, but a soft detector, a low dose or a "
                  f"shaken phone blurs the whole image. At sigma {soft['sigma']:g} the mean P(AS) of the non-AS "
                  f"images went from {_f(base['mean_prob_non_as'])} to {_f(soft['mean_prob_non_as'])} and the "
                  f"specificity at the threshold from {_f(base['specificity'])} to {_f(soft['specificity'])}"
                  + (": the model reads softness as disease, so prefer the sharpest original file."
                     if (soft["mean_prob_non_as"] or 0) - (base["mean_prob_non_as"] or 0) > SOFTNESS_CAUTION_RISE
                     else "."), "",
                  "| Blur sigma | AUC | ECE | Sensitivity | Specificity | Mean P(AS), non-AS | Mean P(AS), AS |",
                  "|---|---|---|---|---|---|---|"]
        for r in so["rows"]:
            lines.append(f"| {r['sigma']:g} | {_f(r['auc'])} | {_f(r['ece'])} | {_f(r['sensitivity'])} | "
                         f"{_f(r['specificity'])} | {_f(r['mean_prob_non_as'])} | {_f(r['mean_prob_as'])} |")
        lines.append("")

    # -- readers
    rd = m.get("readers")
    if rd:
        lines += ["### Reader study", ""]
        mo = rd["model"]
        sent = [f"Against {_TRUTH_TEXT[truth]}, the model alone had sensitivity {_f(mo['recall'])}, specificity "
                f"{_f(mo['specificity'])} and accuracy {_f(mo['accuracy'])}."]
        for r, v in rd["readers"].items():
            a, w = v["alone"], v["with_model"]
            sent.append(f"Simulated {r} alone: sensitivity {_f(a['recall'])}, specificity {_f(a['specificity'])}, "
                        f"accuracy {_f(a['accuracy'])}; with the model by the OR rule (AS if either says AS): "
                        f"sensitivity {_f(w['recall'])}, specificity {_f(w['specificity'])}, accuracy "
                        f"{_f(w['accuracy'])}.")
        lines += [" ".join(sent), "",
                  "| Reader | Sensitivity | Specificity | Accuracy | Precision | F1 |", "|---|---|---|---|---|---|",
                  f"| model alone | {_f(mo['recall'])} | {_f(mo['specificity'])} | {_f(mo['accuracy'])} | "
                  f"{_f(mo['precision'])} | {_f(mo['f1'])} |"]
        for r, v in rd["readers"].items():
            for tag, rep in (("alone", v["alone"]), ("+ model (OR)", v["with_model"])):
                lines.append(f"| {r} {tag} | {_f(rep['recall'])} | {_f(rep['specificity'])} | {_f(rep['accuracy'])} "
                             f"| {_f(rep['precision'])} | {_f(rep['f1'])} |")
        lines += ["", "Agreement (Cohen's κ on AS / non-AS calls; bands of Landis & Koch):", "",
                  "| Pair | κ | Band | Raw agreement |", "|---|---|---|---|"]
        for pair, k in {**rd["kappa"], **rd.get("grades", {})}.items():
            lines.append(f"| {pair} | {_f(k['kappa']) if k else 'undefined'} | {k['band'] if k else '–'} | "
                         f"{_f(k['observed_agreement']) if k else '–'} |")
        lines.append("")

    # -- context: the reference study and the project's goals
    lines += ["### Context", "",
              "The reference study (Li et al., Front. Public Health 2023; real PXRs from three external centres) "
              "reported precision 0.90, recall 0.89 and AUC 0.96 for its ensemble, and AUC 0.904 on smartphone "
              "photos. Numbers on phantoms are not comparable with it; they show the method works end to end.", ""]
    tg = m.get("targets")
    if tg:
        lines += ["| Goal (issue 5, demo ensemble) | Target | Value | Met |", "|---|---|---|---|"]
        names = {"auc": "External AUC", "ece": "ECE after calibration", "phone_auc_drop": "Phone-photo AUC drop",
                 "ensemble_vs_best_member": "Ensemble AUC − best member AUC"}
        for k, t in tg.items():
            lines.append(f"| {names.get(k, k)} | {t['goal']} | {t['value']:.3f} | {'yes' if t['met'] else '**no**'} |")
        lines.append("")

    # -- figures and methods
    figs = m.get("figures", [])
    if figs:
        lines += ["### Figures", ""] + [f"![{f}]({f})" for f in figs] + [""]
    lines += ["### Methods of this evaluation", "",
              f"- Truth: {_TRUTH_TEXT[truth]} (`{m['truth_column']}`); the other label set is reported alongside.",
              "- AUC intervals and paired comparisons: DeLong's method (as R pROC `ci.auc` / `roc.test`); "
              "paired tests use the same cases (ensemble vs member; clean image vs its photo).",
              "- Threshold metrics at the model's stored decision threshold (probability ≥ threshold is AS). "
              "ECE: 10 equal-width bins of P(AS).",
              "- Reader study: simulated experts' AS / non-AS calls; expert + model = AS if either says AS.",
              "- Cached scores: `predictions.csv` (one row per image; `member:*` columns are each member's P(AS)).",
              ""]
    return "\n".join(lines)
