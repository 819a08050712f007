"""The report's plots (matplotlib, headless): accuracy of every judge, on real authors by negative
type, by negative type and by exemplar count, and the training curves with their smoothed trend.
"""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on a server)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _plot_judge_bars(judges: dict, path: Path, title: str) -> Path:
    plt = _pyplot()

    names = list(judges)
    acc = [judges[n]["accuracy"] for n in names]
    ci = [judges[n].get("accuracy_ci95") or [a, a] for n, a in zip(names, acc)]
    err = [[a - c[0] for a, c in zip(acc, ci)], [c[1] - a for a, c in zip(acc, ci)]]
    fig, ax = plt.subplots(figsize=(max(7.0, 0.62 * len(names)), 4.0))
    from persrm_core.evaluation.report import is_model_judge  # report imports this module

    colors = ["#4C72B0" if is_model_judge(n) else "#999999" for n in names]
    ax.bar(names, acc, yerr=err, capsize=4, color=colors)
    ax.axhline(0.5, ls="--", c="k", lw=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (invalid = wrong)")
    _slanted_names(ax)
    ax.set_title(title + "\n(blue: trained judges, grey: baselines)", fontsize=10)
    return _save(fig, path)


def _slanted_names(ax) -> None:
    """Judge names under bars, slanted so long ones (rft_no_evidence) never run into each other."""
    ax.tick_params(axis="x", labelrotation=35, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
        label.set_rotation_mode("anchor")


def plot_accuracy(metrics: dict, path: Path) -> Path:
    return _plot_judge_bars(metrics["judges"], path, "Eval accuracy per judge, 95% bootstrap interval")


def plot_real_authors(metrics: dict, path: Path) -> Path:
    """Accuracy per judge on real authors, or (so the file always exists) a figure saying why not."""
    ra = metrics.get("real_authors", {})
    if ra.get("judges"):
        return _plot_judge_bars(ra["judges"], path, "Real authors: accuracy per judge, 95% bootstrap interval")
    import textwrap

    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(7, 1.6))
    ax.axis("off")
    reason = textwrap.fill(f"Real-authors evaluation skipped: {ra.get('skipped', 'not run')}", 80)
    ax.text(0.5, 0.5, reason, ha="center", va="center", fontsize=9, wrap=True)
    return _save(fig, path, tight=False)


def plot_by_type(metrics: dict, path: Path) -> Path:
    plt = _pyplot()

    names = list(metrics["judges"])
    types = sorted({t for m in metrics["judges"].values() for t in m["by_negative_type"]})
    fig, ax = plt.subplots(figsize=(max(8.0, 0.75 * len(names) + 2), 4.0))
    width = 0.8 / max(len(types), 1)
    for k, t in enumerate(types):
        xs = [i + k * width for i in range(len(names))]
        ax.bar(xs, [metrics["judges"][n]["by_negative_type"].get(t, 0) for n in names], width, label=t)
    ax.set_xticks([i + width * (len(types) - 1) / 2 for i in range(len(names))], names)
    _slanted_names(ax)
    ax.axhline(0.5, ls="--", c="k", lw=0.8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="negative type",
              title_fontsize=8)  # beside the axes: it never covers a bar
    ax.set_title("Accuracy by negative type")
    return _save(fig, path)


def plot_by_exemplar_count(metrics: dict, path: Path) -> Path | None:
    """Accuracy of each judge re-run on the same pairs with the first 1, 2, ... exemplars."""
    by_count = metrics.get("by_exemplar_count") or {}
    if not by_count:
        return None
    plt = _pyplot()

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for name, accs in by_count.items():
        xs = sorted(int(c) for c in accs)
        ax.plot(xs, [accs[str(x)] for x in xs], marker="o", label=name)
        ax.set_xticks(xs)
    ax.axhline(0.5, ls="--", c="k", lw=0.8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("exemplars given")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy by number of exemplars")
    return _save(fig, path)


def plot_curves(curves: dict[str, list[dict]], path: Path) -> Path | None:
    plt = _pyplot()

    panels = [("sft", "loss", "SFT loss"), ("sft", "mean_token_accuracy", "SFT token accuracy"),
              ("rft", "reward", "RFT mean reward"), ("rft", "rewards/verdict_correct/mean", "RFT rollout accuracy"),
              ("rft", "rewards/verdict_invalid/mean", "RFT invalid rate"),
              ("rft", "completions/mean_length", "RFT completion length")]
    panels = [p for p in panels if any(p[1] in h for h in curves.get(p[0], []))]
    if not panels:
        return None
    cols = min(len(panels), 3)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (stage, key, title) in zip(axes.flat, panels):
        pts = [(h["step"], h[key]) for h in curves[stage] if key in h and "step" in h]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        ax.plot(xs, ys, marker=".", alpha=0.45 if len(pts) >= SMOOTH_FROM else 1.0, label="logged")
        if len(pts) >= SMOOTH_FROM:  # a few rollouts a step: the raw curve is noise, the trend is the EMA
            ax.plot(xs, smoothed(ys), lw=2, label="EMA 0.6")
            ax.legend(fontsize=7)
        else:
            ax.text(0.02, 0.03, f"{len(pts)} logged steps: too few to read a trend", transform=ax.transAxes,
                    fontsize=7, color="#555555")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    return _save(fig, path)


SMOOTH_FROM = 8  # logged points from which a curve gets its smoothed trend


def smoothed(values: list[float], weight: float = 0.6) -> list[float]:
    """TensorBoard-style exponential moving average, debiased so the first points are not pulled to 0."""
    out, ema = [], 0.0
    for k, v in enumerate(values, 1):
        ema = weight * ema + (1 - weight) * v
        out.append(ema / (1 - weight ** k))
    return out
