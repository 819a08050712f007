"""The evaluation report: metrics.json, report.md and a self-contained report.html with plots."""

from __future__ import annotations

import base64
import html
import shutil
from pathlib import Path

from persrm_core.atomic import write_json, write_text
from persrm_core.evaluation.plots import (
    plot_accuracy,
    plot_by_exemplar_count,
    plot_by_type,
    plot_curves,
    plot_real_authors,
)
from persrm_core.judging.judge import BASELINES

# The baselines are a closed, registered set (the training-free ones and the scalar RM); every
# other judge is a model judge: base, sft, rft, their no-evidence runs, or the checkpoint a user
# gave `persrm evaluate` under whatever name it has.
BASELINE_JUDGES = (*BASELINES, "scalar_rm")
NO_EVIDENCE = "_no_evidence"  # a model judge judged again without the evidence block (`eval.without_evidence`)


def is_model_judge(name: str) -> bool:
    return name.removesuffix(NO_EVIDENCE) not in BASELINE_JUDGES


def headline_rows(metrics: dict) -> list[dict]:
    rows = []
    for name, m in metrics["judges"].items():
        rows.append({"judge": name, "accuracy": m["accuracy"], "ci95": m.get("accuracy_ci95"),
                     "n": m["n"], "format_valid_rate": m["format_valid_rate"],
                     "position_consistency": m.get("position_consistency"),
                     "debiased_accuracy": m.get("debiased_accuracy"),
                     "brier": m.get("brier"), "ece": m.get("ece"),
                     "rationale_true_rate": m.get("rationale_true_rate")})
    return rows


def unseen_people(metrics: dict) -> tuple[str, dict] | None:
    """The judges' metrics on people the judge never trained on, and what they are: the real-author
    section when it ran on authors kept out of training, else the eval split's unseen authors."""
    ra = metrics.get("real_authors", {})
    if ra.get("judges") and ra.get("unseen_by_training", True):
        return (f"{ra['pairs']} pairs by {ra['authors']} real authors the judge never trained on "
                f"(`{ra['source']}`)", ra["judges"])
    return None


def lead_rows(judges: dict) -> list[dict]:
    """One row per judge: accuracy with its interval, then each negative type with its interval."""
    types = sorted({t for m in judges.values() for t in m.get("by_negative_type", {})})
    rows = []
    for name, m in judges.items():
        row = {"judge": name, "accuracy": m["accuracy"], "ci95": m.get("accuracy_ci95")}
        for t in types:
            row[t] = m.get("by_negative_type", {}).get(t)
            row[f"{t} ci95"] = m.get("by_negative_type_ci95", {}).get(t)
        rows.append(row)
    return rows


def lead_sentences(metrics: dict) -> list[str]:
    """The answer to the question users ask first: does the trained judge beat every baseline on
    people it never saw, overall and for each kind of negative?"""
    found = unseen_people(metrics)
    if found is None:
        return ["No evaluation on people the judge never trained on ran (no real-author corpus; see below)."]
    what, judges = found
    if "rft" not in judges:
        return [f"On {what}: no RFT judgment."]
    baselines = {k: v for k, v in judges.items() if not is_model_judge(k)}
    rft = judges["rft"]
    out = [f"On {what}:"]
    if baselines:
        best = max(baselines, key=lambda k: baselines[k]["accuracy"])
        ok = rft["accuracy"] >= baselines[best]["accuracy"]
        out.append(f"RFT {'is at or above every baseline' if ok else 'is below the best baseline'} overall: "
                   f"{rft['accuracy']:.3f} (95% interval {_fmt(rft.get('accuracy_ci95'))}) against the best, "
                   f"{best}, at {baselines[best]['accuracy']:.3f}.")
        for t, acc in rft.get("by_negative_type", {}).items():
            rivals = {k: v["by_negative_type"].get(t) for k, v in baselines.items()
                      if v.get("by_negative_type", {}).get(t) is not None}
            if rivals:
                b = max(rivals, key=rivals.get)
                out.append(f"{t}: RFT {acc:.3f} {_fmt(rft.get('by_negative_type_ci95', {}).get(t))}, best baseline "
                           f"{b} {rivals[b]:.3f} ({'at or above' if acc >= rivals[b] else 'below'}).")
    return out


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, list):
        return f"[{x[0]:.2f}, {x[1]:.2f}]"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def markdown_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def rft_vs_best_baseline(judges: dict, subject: str, key: str = "rft") -> list[str]:
    """One sentence comparing the judge `key` (RFT) with the most accurate baseline (none if either
    is missing)."""
    baselines = {k: v["accuracy"] for k, v in judges.items() if not is_model_judge(k)}
    if not baselines or key not in judges:
        return []
    best = max(baselines, key=baselines.get)
    a = judges[key]["accuracy"]
    word = "beat" if a > baselines[best] else ("tied" if a == baselines[best] else "did not beat")
    return [f"{subject} {word} the best baseline, {best} ({a:.3f} vs {baselines[best]:.3f})."]


def verdict_sentences(metrics: dict) -> list[str]:
    j = metrics["judges"]
    out = []
    for new, old in (("sft", "base"), ("rft", "sft")):
        if new in j and old in j:
            a, b = j[new]["accuracy"], j[old]["accuracy"]
            word = "beat" if a > b else ("tied" if a == b else "did not beat")
            out.append(f"{new.upper()} {word} {old} on eval accuracy ({a:.3f} vs {b:.3f}; "
                       f"format-valid {j[new]['format_valid_rate']:.3f} vs {j[old]['format_valid_rate']:.3f}).")
    models = [k for k in j if is_model_judge(k) and k != "base" and not k.endswith(NO_EVIDENCE)]
    key = next((k for k in ("rft", "sft") if k in j), models[0] if models else "rft")
    out += rft_vs_best_baseline(j, key.upper() if key in ("rft", "sft") else f"The judge ({key})", key)
    for name in (n for n in j if n.endswith(NO_EVIDENCE) and n[: -len(NO_EVIDENCE)] in j):
        seen = name[: -len(NO_EVIDENCE)]
        out.append(f"Shown no evidence block, {seen.upper()} scored {j[name]['accuracy']:.3f} "
                   f"(format-valid {j[name]['format_valid_rate']:.3f}) against {j[seen]['accuracy']:.3f} with it.")
    if metrics.get("settings", {}).get("profile") == "smoke":
        out.append("This is the smoke profile: a few training steps on a model of tens of thousands of parameters, "
                   "so model judges at 0.000 (no parseable verdict) are expected; it checks that the chain runs, "
                   "not what it learns.")
    return out


def real_author_rows(metrics: dict) -> list[dict]:
    """The per-judge table of the real-authors section (empty when it was skipped or absent)."""
    judges = metrics.get("real_authors", {}).get("judges", {})
    return [{"judge": n, "accuracy": m["accuracy"], "ci95": m.get("accuracy_ci95"), "n": m["n"],
             "format_valid_rate": m["format_valid_rate"], "position_consistency": m.get("position_consistency")}
            for n, m in judges.items()]


def real_author_sentences(metrics: dict) -> list[str]:
    """What the real-authors section says before its table: the data, or why it was skipped."""
    ra = metrics.get("real_authors")
    if ra is None:
        return []
    if "judges" not in ra:
        return [f"The real-authors evaluation was skipped: {ra.get('skipped', 'no reason recorded')}."]
    authors = f" by {ra['authors']} authors" if ra.get("authors") else ""
    seen = ("None of these authors is in training." if ra.get("unseen_by_training", True)
            else "The judge was trained on this corpus's authors, so this section is not about unseen people.")
    out = [f"{ra['pairs']} cross-author pairs{authors} from `{ra['source']}`, answering a neutral prompt: the "
           "opening of one of the author's texts against the opening of another author's text, cut to the same "
           "length; half by a random other author (cross_author_random), half by the other author whose text is "
           f"nearest in topic (cross_author_topic). {seen}"]
    out += rft_vs_best_baseline(ra["judges"], "On real authors, RFT")
    return out


def _cut(text: str, words: int) -> str:
    parts = str(text).split()
    return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


def pick_examples(pairs: list, judgments: list[dict], n: int, judge: str) -> list[dict]:
    """Up to `n` judgments to show, about half right and half wrong, each from a different author
    where there are enough (one author's pairs after another's otherwise): the exemplars and the
    responses cut for reading, the scores, the label and the choice."""
    def author_spread(items):
        by_author: dict[str, list] = {}
        for item in items:
            by_author.setdefault(item[0].author_id, []).append(item)
        queues, out = list(by_author.values()), []
        while any(queues):
            out += [q.pop(0) for q in queues if q]
        return out

    done = [(p, j) for p, j in zip(pairs, judgments) if p.label is not None]
    right = author_spread([(p, j) for p, j in done if j["choice"] == p.label])
    wrong = author_spread([(p, j) for p, j in done if j["choice"] != p.label])
    k = min(len(wrong), n // 2)
    picked = right[: n - k] + wrong[:k]
    if len(picked) < n:  # too few right ones: more wrong ones
        picked += wrong[k: k + n - len(picked)]
    return [{"pair_id": p.pair_id, "author_id": p.author_id, "judge": judge, "label": p.label,
             "choice": j["choice"], "scores": j.get("scores"), "rationale": j.get("rationale") or "",
             "exemplars": [_cut(e, 40) for e in list(p.exemplars)[:2]], "prompt": _cut(p.prompt, 30),
             "response_a": _cut(p.response_a, 60), "response_b": _cut(p.response_b, 60)} for p, j in picked]


def _example_md(ex: dict) -> list[str]:
    verdict = "right" if ex["choice"] == ex["label"] else "wrong"
    scores = f", scores A={ex['scores'][0]:g} B={ex['scores'][1]:g}" if ex.get("scores") else ""
    out = [f"### {ex['pair_id']}: author {ex.get('author_id', '?')}, {ex['judge']} chose {ex['choice']}, "
           f"label {ex['label']} ({verdict}{scores})", ""]
    out += [f"> exemplar {i + 1}: {e}" for i, e in enumerate(ex.get("exemplars", []))]
    if "prompt" in ex:
        out += ["", f"Prompt: {ex['prompt']}", "", f"**A:** {ex['response_a']}", "", f"**B:** {ex['response_b']}"]
    return out + ["", "```", ex["rationale"], "```", ""]


def _example_html(ex: dict) -> str:
    verdict = "right" if ex["choice"] == ex["label"] else "wrong"
    scores = f", scores A={ex['scores'][0]:g} B={ex['scores'][1]:g}" if ex.get("scores") else ""
    e = html.escape
    out = [f"<h3>{e(ex['pair_id'])}: author {e(str(ex.get('author_id', '?')))}, {e(ex['judge'])} chose "
           f"{e(str(ex['choice']))}, label {e(str(ex['label']))} ({verdict}{scores})</h3>"]
    out += [f"<blockquote>exemplar {i + 1}: {e(x)}</blockquote>" for i, x in enumerate(ex.get("exemplars", []))]
    if "prompt" in ex:
        out += [f"<p>Prompt: {e(ex['prompt'])}</p><p><b>A:</b> {e(ex['response_a'])}</p>"
                f"<p><b>B:</b> {e(ex['response_b'])}</p>"]
    return "".join(out) + f"<pre>{e(ex['rationale'])}</pre>"


def judge_scores(metrics: dict) -> dict[str, dict]:
    """One small record a judge, the numbers `dvc metrics show` and `dvc metrics diff` print (one
    row a judge, a few columns): accuracy and format-valid rate on the eval split, and on the real
    authors (all, random other author, topic-matched) where that section ran. Written under scores/."""
    real = (metrics.get("real_authors") or {}).get("judges") or {}
    out = {}
    for name in dict.fromkeys([*metrics["judges"], *real]):
        m, r = metrics["judges"].get(name), real.get(name)
        row = {"eval_accuracy": m["accuracy"], "eval_format_valid": m["format_valid_rate"]} if m else {}
        if r:
            by = r.get("by_negative_type") or {}
            row |= {"real_accuracy": r["accuracy"], "real_random_other": by.get("cross_author_random"),
                    "real_topic_matched": by.get("cross_author_topic")}
        out[name] = {k: v for k, v in row.items() if v is not None}
    return out


def plot_data(metrics: dict, curves: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The plots' numbers as records, for `dvc plots show` (written under plots/)."""
    data = {"accuracy": [{"judge": n, "accuracy": m["accuracy"], "ci_low": m["accuracy_ci95"][0],
                          "ci_high": m["accuracy_ci95"][1]} for n, m in metrics["judges"].items()],
            "by_exemplar_count": [{"judge": n, "exemplars": int(c), "accuracy": a}
                                  for n, accs in (metrics.get("by_exemplar_count") or {}).items()
                                  for c, a in sorted(accs.items(), key=lambda kv: int(kv[0]))]}
    keys = {"sft": ("loss", "mean_token_accuracy"),
            "rft": ("reward", "rewards/verdict_correct/mean", "rewards/verdict_invalid/mean", "completions/mean_length")}
    for stage, wanted in keys.items():
        data[f"{stage}_curve"] = [{"step": h["step"], **{k.replace("/", "_"): h[k] for k in wanted if k in h}}
                                  for h in curves.get(stage, []) if "step" in h and any(k in h for k in wanted)]
    return data


def write_report(out_dir: str | Path, metrics: dict, curves: dict[str, list[dict]],
                 examples: list[dict], title: str = "PersRM evaluation report",
                 split: str = "the eval split") -> dict[str, Path]:
    """Write metrics.json, report.md, report.html and the plot PNGs into `out_dir` (secrets masked:
    `persrm_core.redact`)."""
    from persrm_core.redact import redact

    metrics, examples = redact(metrics), redact(examples)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = {"accuracy": plot_accuracy(metrics, out / "accuracy.png"),
             "by_negative_type": plot_by_type(metrics, out / "by_negative_type.png")}
    if (c := plot_curves(curves, out / "training_curves.png")) is not None:
        plots["training_curves"] = c
    if "real_authors" in metrics:  # eval_report always records it (data or a skip reason)
        plots["real_authors"] = plot_real_authors(metrics, out / "real_authors.png")
    if (c := plot_by_exemplar_count(metrics, out / "by_exemplar_count.png")) is not None:
        plots["by_exemplar_count"] = c
    write_json(out / "metrics.json", metrics)
    for name, records in plot_data(metrics, curves).items():
        write_json(out / "plots" / f"{name}.json", records)
    if (out / "scores").is_dir():
        shutil.rmtree(out / "scores")  # a judge no longer evaluated leaves no stale row
    for name, row in judge_scores(metrics).items():
        write_json(out / "scores" / f"{name}.json", row)
    rows = headline_rows(metrics)
    by_type = [{"judge": n, **m["by_negative_type"]} for n, m in metrics["judges"].items()]
    by_split = [{"judge": n, **m["by_split"]} for n, m in metrics["judges"].items() if m["by_split"]]
    found = unseen_people(metrics)
    lead = lead_rows(found[1]) if found else []
    md = [f"# {title}", "", "## Does the trained judge beat every baseline on people it never saw?", "",
          *[f"- {s}" for s in lead_sentences(metrics)], "", *([markdown_table(lead), ""] if lead else []),
          "## Summary", "", *[f"- {s}" for s in verdict_sentences(metrics)], "",
          f"## Judges on {split}", "", markdown_table(rows), "", "![accuracy](accuracy.png)", "",
          "## By negative type", "", markdown_table(by_type), "", "![by type](by_negative_type.png)", ""]
    if by_split:
        md += ["## By split (eval_seen: unseen texts of seen authors; eval_unseen: unseen authors)", "",
               markdown_table(by_split), ""]
    if count_rows := exemplar_count_rows(metrics):
        md += ["## By number of exemplars (the same pairs re-judged with the first k exemplars)", "",
               markdown_table(count_rows), "", "![by exemplar count](by_exemplar_count.png)", ""]
    if "real_authors" in metrics:
        md += ["## Real authors", "", *real_author_sentences(metrics), ""]
        if real_rows := real_author_rows(metrics):
            md += [markdown_table(real_rows), "", "![real authors](real_authors.png)", ""]
    if "training_curves" in plots:
        md += ["## Training curves", "", "![curves](training_curves.png)", ""]
    md += ["## Example judgments", ""]
    for ex in examples:
        md += _example_md(ex)
    md += ["", f"Dataset and settings: {metrics.get('settings', {})}"]
    write_text(out / "report.md", "\n".join(md) + "\n")
    write_text(out / "report.html", _html(title, metrics, rows, by_type, by_split, plots, examples, lead, split))
    return {"metrics": out / "metrics.json", "scores": out / "scores", "report_md": out / "report.md",
            "report_html": out / "report.html", **plots}


def exemplar_count_rows(metrics: dict) -> list[dict]:
    return [{"judge": n, **{f"{c} exemplar{'s' if c != '1' else ''}": a for c, a in accs.items()}}
            for n, accs in (metrics.get("by_exemplar_count") or {}).items()]


def _table_html(rows: list[dict]) -> str:
    if not rows:
        return ""
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r[c]))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{path.stem}" src="data:image/png;base64,{data}">'


def _html(title, metrics, rows, by_type, by_split, plots, examples, lead=(), split="the eval split") -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:"
             "collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}pre{background:#f6f6f6;"
             "padding:8px;white-space:pre-wrap}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             "<h2>Does the trained judge beat every baseline on people it never saw?</h2><ul>"]
    parts += [f"<li>{html.escape(s)}</li>" for s in lead_sentences(metrics)]
    parts += ["</ul>", _table_html(list(lead)), "<h2>Summary</h2><ul>"]
    parts += [f"<li>{html.escape(s)}</li>" for s in verdict_sentences(metrics)]
    parts += [f"</ul><h2>Judges on {html.escape(split)}</h2>", _table_html(rows), _img(plots["accuracy"]),
              "<h2>By negative type</h2>", _table_html(by_type), _img(plots["by_negative_type"])]
    if by_split:
        parts += ["<h2>By split</h2>", _table_html(by_split)]
    if count_rows := exemplar_count_rows(metrics):
        parts += ["<h2>By number of exemplars</h2>", _table_html(count_rows), _img(plots["by_exemplar_count"])]
    if "real_authors" in metrics:
        parts += ["<h2>Real authors</h2>", *(f"<p>{html.escape(t)}</p>" for t in real_author_sentences(metrics))]
        if real_rows := real_author_rows(metrics):
            parts += [_table_html(real_rows), _img(plots["real_authors"])]
    if "training_curves" in plots:
        parts += ["<h2>Training curves</h2>", _img(plots["training_curves"])]
    parts.append("<h2>Example judgments</h2>")
    parts += [_example_html(ex) for ex in examples]
    parts.append(f"<p>Dataset and settings: {html.escape(str(metrics.get('settings', {})))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
