"""Teacher distillation: traces kept only when the teacher names the labelled response in both
A/B orders, and SFT rows that carry the teacher's trace."""

from __future__ import annotations

from persrm_core.judging.judge_format import RenderLimits, format_completion, parse_verdict
from persrm_core.llm.generation import SamplingParams
from persrm_core.training.teacher import teacher_traces
from persrm_core.training.trainers import sft_rows


class ScriptedTeacher:
    """Answers requests in order from a script (generate_cached sends the missing ones in order)."""

    name, model = "scripted", "teacher-1"

    def __init__(self, outputs):
        self.outputs, self.sent = list(outputs), []

    def generate(self, requests, params):
        self.sent += requests
        return [self.outputs.pop(0) for _ in requests]


def pair(pid: str, label: str) -> dict:
    return {"pair_id": pid, "author_id": "a", "exemplars": ["i dont like capitals at all, never did."],
            "prompt": f"so what happened to {pid}", "response_a": "we went home early and ate toast.",
            "response_b": "We Went Home Early And Ate Toast!", "label": label, "negative_type": "rule_perturbation"}


def says(choice: str) -> str:
    hi, lo = 8, 2
    return format_completion("The exemplars are all lowercase; one response matches.", hi if choice == "A" else lo,
                             lo if choice == "A" else hi, choice)


def test_only_pairs_right_in_both_orders_are_kept(tmp_path):
    pairs = [pair("right", "A"), pair("wrong", "A"), pair("biased", "B"), pair("invalid", "B"), pair("right-b", "B")]
    script = [says("A"), says("B"),      # right: A as given, B once swapped
              says("B"), says("A"),      # wrong in both orders
              says("A"), says("A"),      # always names A: a position bias
              "no verdict here", says("A"),
              says("B"), says("A")]      # right for label B
    teacher = ScriptedTeacher(script)
    kept, stats = teacher_traces(pairs, teacher, SamplingParams(temperature=0.0), tmp_path / "c.jsonl",
                                 RenderLimits(), progress=False)
    assert [p["pair_id"] for p in kept] == ["right", "right-b"]
    assert stats.as_dict() == {"teacher_pairs": 5, "teacher_kept": 2, "teacher_keep_rate": 0.4, "teacher_invalid": 1,
                               "teacher_wrong": 1, "teacher_inconsistent": 1}
    assert all(parse_verdict(p["trace"]).choice == p["label"] for p in kept)
    # the swapped request really shows B's text as A
    assert "We Went Home" in teacher.sent[1].messages[-1]["content"].split("Response A")[1].split("Response B")[0]
    # a second run is served from the cache
    again, _ = teacher_traces(pairs, ScriptedTeacher([]), SamplingParams(temperature=0.0), tmp_path / "c.jsonl",
                              RenderLimits(), progress=False)
    assert again == kept


def test_sft_rows_train_on_the_teacher_trace_and_skip_offline_rejection_for_it():
    p = pair("x", "A") | {"trace": says("A")}
    rows = sft_rows([p], RenderLimits(), rejection_sampling=True)
    assert rows[0]["completion"][0]["content"] == says("A")


def test_offline_fallback_keeps_every_pair_in_order_with_the_teachers_traces_where_kept():
    from persrm_core.training.teacher import with_offline_fallback

    pairs = [pair("p1", "A"), pair("p2", "B"), pair("p3", "A")]
    taught = [pair("p2", "B") | {"trace": says("B")}]
    out, fell_back = with_offline_fallback(pairs, taught)
    assert [p["pair_id"] for p in out] == ["p1", "p2", "p3"] and fell_back == 2
    assert out[1]["trace"] == says("B") and "trace" not in out[0] and "trace" not in out[2]
    rows = sft_rows(out, RenderLimits(evidence=False))  # the teacher's trace for p2, offline traces for the rest
    assert rows and any(r["completion"][0]["content"] == says("B") for r in rows)
    assert not any("trace" in p for p in pairs)  # the inputs are not changed


def test_teacher_sample_is_a_seeded_subset_in_order_and_all_when_unset():
    from persrm_core.training.teacher import teacher_sample

    pairs = [pair(f"p{k}", "A") for k in range(10)]
    assert teacher_sample(pairs, 0, seed=1) == pairs and teacher_sample(pairs, 10, seed=1) == pairs
    some = teacher_sample(pairs, 4, seed=1)
    ids = [p["pair_id"] for p in some]
    assert len(ids) == 4 and ids == sorted(ids, key=lambda i: int(i[1:]))  # original order kept
    assert some == teacher_sample(pairs, 4, seed=1)  # seeded
    assert any(teacher_sample(pairs, 4, seed=s) != some for s in range(2, 6))  # and the seed matters
