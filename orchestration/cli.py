"""`persrm`: run the chain through Dagster, ingest exemplars, judge and evaluate pair files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from persrm_core.errors import InputError  # noqa: E402

# persrm_core.judging.judge.BASELINES, spelled here so `persrm --help` need not import the judging stack (tested equal)
BASELINE_NAMES = ("random", "length", "stylometric", "ngram", "embedding", "combined")
ASSET_KEYS = ["raw_exemplars", "synthetic_pairs", "filtered_corpus", "style_encoder", "evidence_model", "base_model",
              "sft_checkpoint", "rft_checkpoint", "scalar_rm", "eval_report"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="persrm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="materialize the chain (or --select assets) through Dagster")
    run.add_argument("--profile", default=None, help="params.yaml profile (smoke, default, gpu)")
    run.add_argument("--select", nargs="+", choices=ASSET_KEYS, metavar="ASSET",
                     help=f"only these assets (upstream artifacts are read from disk): {', '.join(ASSET_KEYS)}")
    run.add_argument("--params", default=None, help="path to params.yaml")
    run.add_argument("--authors", nargs="+", metavar="AUTHOR",
                     help="ingest only these authors' raw_exemplars partitions (each in its own run; their "
                          "new texts in the incoming folder land in data/raw first); default: every author")
    run.add_argument("--no-incoming", action="store_true",
                     help="read data/raw only: do not land texts waiting in the incoming folder (dvc repro uses this)")

    ing = sub.add_parser("ingest", help="convert exemplars (JSONL, author-grouped JSON, or a directory "
                                        "per author) into exemplar JSONL")
    ing.add_argument("src")
    ing.add_argument("--out", required=True)
    ing.add_argument("--min-texts-per-author", type=int, default=1,
                     help="refuse an author with fewer texts (default 1: a one-text author is judged for, "
                          "and the text serves as other authors' negatives)")

    for name, helptext in (("judge", "judge pair records, writing one judgment per pair"),
                           ("evaluate", "judge pair records and write metrics.json and a report")):
        j = sub.add_parser(name, help=helptext)
        who = j.add_mutually_exclusive_group(required=name == "judge")
        who.add_argument("--model", help="checkpoint directory: a Hugging Face model folder "
                                         "(config.json, weights, tokenizer)")
        who.add_argument("--baseline", choices=list(BASELINE_NAMES))
        j.add_argument("--evidence", default=None,
                       help="fitted evidence folder for --baseline combined (default: the profile's paths.evidence, "
                            "data/models/evidence after `make demo`); a --model checkpoint carries its own")
        j.add_argument("--pairs", required=True, help="pair records, JSONL or Parquet" +
                       (" (label optional)" if name == "judge" else " (each with its label)"))
        j.add_argument("--out", required=True, help="output JSONL (judge) or directory (evaluate)")
        j.add_argument("--profile", default=None, help="params.yaml profile for render and generation limits")
        j.add_argument("--both-orders", action=argparse.BooleanOptionalAction, default=None,
                       help="also judge with A and B swapped (default: the profile's eval.both_orders, "
                            "true in params.yaml, as the pipeline evaluates)")
        j.add_argument("--batch-size", type=int, default=None)
        j.add_argument("--max-new-tokens", type=int, default=None)
        j.add_argument("--seed", type=int, default=0)
        j.add_argument("--engine", choices=["transformers", "vllm"], default=None,
                       help="generation engine for --model (default: the profile's eval.engine; vllm needs a GPU)")
        j.add_argument("--closing", choices=["constrained", "free"], default=None,
                       help="constrained: an unreadable Scores/Verdict block is decoded again under the format, "
                            "keeping the model's rationale (transformers engine); free: as generated "
                            "(default: the profile's eval.closing)")
        if name == "evaluate":
            j.add_argument("--name", default=None,
                           help="the judge's name in the report (default: the --model folder's name, e.g. rft, "
                                "or the --baseline)")
    return p


def judge_name(args) -> str:
    """What `persrm evaluate` calls the judge under test: --name, the baseline, or the checkpoint
    folder's name (`rft` for data/models/rft), never a baseline's name for a model."""
    if getattr(args, "name", None):
        return args.name
    if args.baseline:
        return args.baseline
    name = Path(str(args.model or "model").rstrip("/")).name or "model"
    return f"{name} (model)" if name in BASELINE_NAMES else name


def _gen(args, s):
    from persrm_core.judging.judge import DecodingSettings

    return DecodingSettings(batch_size=args.batch_size or s.eval.batch_size,
                              max_new_tokens=args.max_new_tokens or s.eval.max_new_tokens,
                              engine=args.engine or s.eval.engine,
                              closing=args.closing or ("free" if args.engine == "vllm" else s.eval.closing))


def _fitted_evidence(args, s) -> Path | None:
    """The fitted evidence folder for `combined`: --evidence when given, else the --model
    checkpoint's own, else the profile's paths.evidence; None when the folder has no evidence.json."""
    from persrm_core.judging.judge import EVIDENCE_DIR

    if args.evidence:
        candidates = [Path(args.evidence)]
    else:
        candidates = [Path(args.model) / EVIDENCE_DIR] if args.model else []
        candidates.append(s.paths.evidence)
    return next((d for d in candidates if (d / "evidence.json").is_file()), None)


def _judge(args, pairs, s) -> list[dict]:
    from persrm_core.judging.judge import BaselineJudge, ModelJudge

    if args.baseline:
        evidence = None
        if args.baseline == "combined":
            evidence = _fitted_evidence(args, s)
            if evidence is None:
                raise InputError(Path(args.evidence) if args.evidence else s.paths.evidence,
                                 "no fitted evidence here (evidence.json); run `make demo` or "
                                 "`persrm run --select evidence_model`, or pass --evidence DIR")
        return BaselineJudge(args.baseline, args.seed, evidence).judge(pairs, both_orders=args.both_orders)
    from persrm_core.llm.bundled_lm import is_bundled

    if not is_bundled(args.model) and not (Path(args.model).is_dir() and (Path(args.model) / "config.json").exists()):
        raise InputError(args.model, "not a checkpoint directory (no config.json) nor a bundled model name")
    judge = ModelJudge(args.model, s.render, _gen(args, s), trust_remote_code=s.base_model.trust_remote_code)
    return judge.judge(pairs, both_orders=args.both_orders)


def _print_summary(args) -> None:
    import json

    from persrm_core.config import load_settings
    from persrm_core.evaluation.report import headline_rows, markdown_table, verdict_sentences

    s = load_settings(args.profile, args.params)
    metrics = json.loads((s.paths.report / "metrics.json").read_text())
    print("\n" + markdown_table(headline_rows(metrics)))
    for sentence in verdict_sentences(metrics):
        print(f"- {sentence}")
    print(f"\nReport: {s.paths.report / 'report.html'} (and report.md, metrics.json)")
    print(f"Checkpoints: {s.paths.sft}, {s.paths.rft}")


def main(argv: list[str] | None = None) -> int:
    from persrm_core.redact import install_log_redaction, redact

    args = _parser().parse_args(argv)
    install_log_redaction()
    try:
        return _dispatch(args)
    except InputError as exc:
        print(redact(f"persrm {args.command}: error: {exc}"), file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    if args.command == "run":
        from orchestration.runner import failures, run_chain
        from persrm_core.config import load_settings

        load_settings(args.profile, args.params)  # a bad profile or params file: one line, exit 2, before Dagster starts

        result = run_chain(profile=args.profile, select=args.select, params_path=args.params,
                           authors=args.authors, land_incoming=not args.no_incoming)
        for line in failures(result):
            print(f"persrm run: error: {line}", file=sys.stderr)
        if result.success and (not args.select or "eval_report" in args.select):
            _print_summary(args)
        return 0 if result.success else 1

    if args.command == "ingest":
        from persrm_core.data.ingest import ingest

        exemplars = ingest(args.src, args.out, args.min_texts_per_author)
        authors = len({e.author_id for e in exemplars})
        print(f"wrote {len(exemplars)} exemplars by {authors} authors to {args.out}")
        return 0

    from persrm_core.atomic import atomic_dir, write_jsonl
    from persrm_core.config import load_settings
    from persrm_core.records import read_pairs

    s = load_settings(args.profile)
    pairs = read_pairs(args.pairs, require_label=args.command != "judge")  # every record, before any work
    if args.both_orders is None:
        args.both_orders = s.eval.both_orders
    both_orders = args.both_orders
    judgments = _judge(args, pairs, s)
    if args.command == "judge":
        n = write_jsonl(args.out, judgments)
        valid = sum(j["choice"] is not None for j in judgments)
        closed = sum(j["choice"] is not None and j.get("format_valid") is False for j in judgments)
        note = f", {closed} of them by a constrained closing" if closed else ""
        print(f"wrote {n} judgments ({valid} valid{note}) to {args.out}")
        return 0

    from persrm_core.evaluation.metrics import judge_metrics
    from persrm_core.evaluation.report import pick_examples, write_report
    from persrm_core.judging.judge import BaselineJudge

    # The pipeline's evaluation on the user's pairs: every baseline of the profile that needs no
    # training of its own (scalar_rm is a checkpoint of the chain), `combined` where fitted evidence
    # is found (--evidence, the checkpoint's own, or the profile's paths.evidence).
    name = judge_name(args)
    fitted = _fitted_evidence(args, s)
    judges = {name: judgments}
    for b in s.eval.baselines:
        if b in (args.baseline, "scalar_rm") or (b == "combined" and fitted is None):
            continue
        judges[b] = BaselineJudge(b, args.seed, fitted).judge(pairs, both_orders=both_orders)
    metrics = {"judges": {n: judge_metrics(pairs, j) for n, j in judges.items()},
               "settings": {"pairs": str(args.pairs), "model": args.model, "both_orders": both_orders,
                            "evidence": str(fitted) if fitted else None, "profile": s.profile}}
    examples = pick_examples(pairs, judgments, 4, name)
    with atomic_dir(args.out) as tmp:
        write_report(tmp, metrics, {}, examples, title=f"PersRM evaluation of {args.model or args.baseline}",
                     split=f"{Path(args.pairs).name} ({len(pairs)} pairs)")
        write_jsonl(Path(tmp) / "judgments.jsonl", judgments)
    acc = metrics["judges"][name]["accuracy"]
    print(f"{name}: accuracy {acc:.3f} on {len(pairs)} pairs; report in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
