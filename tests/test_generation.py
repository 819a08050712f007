"""persrm_core.llm.generation, templates and llm_negatives: the OpenAI-compatible client against a
local chat-completions server (retries, fail-fast, concurrency, key hygiene), the resumable
request cache, the transformers backend on a tiny offline model, and the validation rules of
LLM negatives."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from persrm_core.judging.judge_format import SYSTEM_PROMPT, format_completion, parse_verdict
from persrm_core.llm.generation import (
    GenerationCache,
    GenerationError,
    GenRequest,
    OpenAIBackend,
    SamplingParams,
    TransformersBackend,
    VLLMBackend,
    generate_cached,
    make_backend,
    request_key,
)
from persrm_core.synthesis.llm_negatives import (
    LLM_STRATEGIES,
    changed_words,
    clean_output,
    copy_share,
    llm_negatives,
    validate,
)
from persrm_core.synthesis.pairs import Task
from persrm_core.synthesis.templates import TEMPLATES, render

KEY = "sk-test-SECRET-4f9a2c"
KEY_ENV = "PERSRM_TEST_API_KEY"
FAST = SamplingParams(temperature=0.0, max_tokens=16)


def req(text: str, template: str = "t@v1", meta: dict | None = None) -> GenRequest:
    return GenRequest(messages=({"role": "system", "content": "sys"}, {"role": "user", "content": text}),
                      template=template, meta=meta)


# --- a local OpenAI-compatible server -------------------------------------------------------------

class FakeServer:
    """A chat-completions server on 127.0.0.1:<free port>. Records each call's path, headers and
    body; `fail_first` calls answer `fail_status` (with `retry_after` if set); `status` answers
    every call with that error; `slow_first` calls sleep `slow_s` before answering; `delay_s`
    delays every answer; `reply(body)` makes the content (default: echo of the last message), or
    the whole answer body when it returns a dict."""

    def __init__(self):
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.fail_first, self.fail_status, self.retry_after = 0, 500, None
        self.status: int | None = None
        self.status_for = lambda body: None  # a per-request error status
        self.error_message = "bad request"
        self.slow_first, self.slow_s, self.delay_s = 0, 0.0, 0.0
        self.in_flight = self.max_in_flight = 0
        self.reply = lambda body: "echo: " + body["messages"][-1]["content"]
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.calls)
                    server.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    time.sleep(server.delay_s + (server.slow_s if n < server.slow_first else 0))
                    status = server.status or server.status_for(body)
                    if status is not None:
                        self._send(status, {"error": {"message": server.error_message}})
                    elif n < server.fail_first:
                        extra = {"Retry-After": server.retry_after} if server.retry_after else {}
                        self._send(server.fail_status, {"error": {"message": "try later"}}, extra)
                    else:
                        content = server.reply(body)
                        self._send(200, content if isinstance(content, dict) else
                                   {"choices": [{"message": {"role": "assistant", "content": content}}]})
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _send(self, status, obj, headers=None):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


@pytest.fixture
def keyed(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)


def backend_for(server: FakeServer, **kw) -> OpenAIBackend:
    opts = {"api_key_env": KEY_ENV, "backoff_s": 0.01, "timeout_s": 5, "max_retries": 3} | kw
    return OpenAIBackend(server.url, "test-model", **opts)


def test_openai_sends_the_chat_completions_body_and_the_key_from_the_env(server, keyed):
    params = SamplingParams(temperature=0.3, top_p=0.9, max_tokens=12, seed=7)
    out = backend_for(server).generate([req("one"), req("two")], params)
    assert out == ["echo: one", "echo: two"]
    call = next(c for c in server.calls if c["body"]["messages"][-1]["content"] == "one")  # sent concurrently
    assert call["path"] == "/v1/chat/completions"
    assert call["headers"]["Authorization"] == f"Bearer {KEY}"
    assert call["body"] == {"model": "test-model", "messages": [{"role": "system", "content": "sys"},
                                                                {"role": "user", "content": "one"}],
                            "temperature": 0.3, "top_p": 0.9, "max_tokens": 12, "seed": 7}


def test_openai_without_the_env_var_sends_no_authorization(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert backend_for(server).generate([req("x")], FAST) == ["echo: x"]
    assert "Authorization" not in server.calls[0]["headers"]


def test_openai_key_is_read_at_request_time(server, monkeypatch):
    backend = backend_for(server)
    monkeypatch.setenv(KEY_ENV, "sk-later")
    backend.generate([req("x")], FAST)
    assert server.calls[0]["headers"]["Authorization"] == "Bearer sk-later"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_openai_retries_server_errors_and_rate_limits(server, keyed, status):
    server.fail_first, server.fail_status = 2, status
    assert backend_for(server).generate([req("x")], FAST) == ["echo: x"]
    assert len(server.calls) == 3


def test_openai_honours_retry_after(server, keyed):
    server.fail_first, server.fail_status, server.retry_after = 1, 429, "0.4"
    start = time.monotonic()
    assert backend_for(server, backoff_s=0.0).generate([req("x")], FAST) == ["echo: x"]
    assert time.monotonic() - start >= 0.35


def test_openai_retries_timeouts(server, keyed):
    server.slow_first, server.slow_s = 1, 1.5
    out = backend_for(server, timeout_s=0.3).generate([req("x")], FAST)
    assert out == ["echo: x"] and len(server.calls) == 2


def test_openai_gives_up_after_max_retries(server, keyed):
    server.fail_first = 100
    with pytest.raises(GenerationError, match=r"after 3 attempts.*HTTP 500: try later"):
        backend_for(server, max_retries=2).generate([req("x")], FAST)
    assert len(server.calls) == 3


def test_openai_connection_refused_is_retried_then_reported(keyed):
    s = FakeServer()
    url = s.url
    s.close()  # nothing listens there any more
    backend = OpenAIBackend(url, "m", api_key_env=KEY_ENV, max_retries=1, backoff_s=0.01, timeout_s=2)
    with pytest.raises(GenerationError, match="after 2 attempts.*Connect"):
        backend.generate([req("x")], FAST)


def test_openai_fails_fast_on_client_errors_without_leaking_the_key(server, keyed, caplog):
    caplog.set_level(logging.DEBUG)
    server.status = 400
    server.error_message = f"model 'nope' does not exist (your key {KEY} is fine)"  # a server echoing the key
    backend = backend_for(server)
    with pytest.raises(GenerationError) as info:
        backend.generate([req("x")], FAST)
    assert len(server.calls) == 1  # no retry
    msg = str(info.value)
    assert "400" in msg and "model 'nope' does not exist" in msg
    everything = "\n".join([msg, repr(info.value), repr(backend), str(backend), caplog.text,
                            "".join(traceback.format_exception(info.value))])
    assert KEY not in everything
    assert "***" in msg


def test_openai_key_absent_from_retry_logs(server, keyed, caplog):
    caplog.set_level(logging.DEBUG)
    server.fail_first = 1
    backend_for(server).generate([req("x")], FAST)
    assert "retry 1/3" in caplog.text
    assert KEY not in caplog.text


def test_openai_client_error_stops_the_batch_without_waiting_for_retries(server, keyed):
    server.status_for = lambda body: 400 if body["messages"][-1]["content"] == "bad" else 503
    start = time.monotonic()
    with pytest.raises(GenerationError, match="400"):
        backend_for(server, backoff_s=3.0, max_retries=5).generate([req("slow"), req("bad")], FAST)
    assert time.monotonic() - start < 2.5


def test_openai_runs_requests_concurrently_in_order(server, keyed):
    server.delay_s = 0.2
    texts = [f"r{i}" for i in range(8)]
    start = time.monotonic()
    out = backend_for(server, concurrency=4).generate([req(t) for t in texts], FAST)
    elapsed = time.monotonic() - start
    assert out == [f"echo: {t}" for t in texts]
    assert server.max_in_flight >= 3
    assert elapsed < 8 * 0.2  # faster than one at a time


def test_openai_null_content_is_empty_and_a_malformed_answer_is_an_error(server, keyed):
    server.reply = lambda body: None  # content null -> ""
    assert backend_for(server).generate([req("x")], FAST) == [""]
    server.reply = lambda body: {"object": "error"}  # a 200 without choices
    with pytest.raises(GenerationError, match=r"without choices\[0\]\.message\.content"):
        backend_for(server).generate([req("x")], FAST)


# --- the cache and generate_cached ------------------------------------------------------------------

class FakeBackend:
    """Answers f"{template}|{last message}" (or `canned(request)`), counting requests; raises
    after `die_after` requests in total, as a backend killed mid-run would."""

    name = "fake"

    def __init__(self, model: str = "m", die_after: int | None = None, canned=None):
        self.model, self.die_after, self.canned = model, die_after, canned
        self.sent: list[GenRequest] = []

    def generate(self, requests, params):
        out = []
        for r in requests:
            if self.die_after is not None and len(self.sent) >= self.die_after:
                raise RuntimeError("backend died")
            self.sent.append(r)
            out.append(self.canned(r) if self.canned else f"{r.template}|{r.messages[-1]['content']}|{params.seed}")
        return out


def test_request_key_depends_on_what_decides_the_answer():
    b, r = FakeBackend(), req("hello", meta={"task": 1})
    base = request_key(b, r, FAST)
    assert base == request_key(FakeBackend(), req("hello", meta={"task": 2}), FAST)  # meta is not in the key
    assert len(base) == 64
    assert request_key(b, req("hello", template="t@v2"), FAST) != base
    assert request_key(b, req("hello!"), FAST) != base
    assert request_key(FakeBackend(model="other"), r, FAST) != base
    assert request_key(b, r, SamplingParams(temperature=0.0, max_tokens=17)) != base
    assert request_key(b, r, SamplingParams(temperature=0.0, max_tokens=16, seed=1)) != base


def test_generate_cached_resumes_after_a_mid_run_death(tmp_path):
    cache = tmp_path / "gen.jsonl"
    requests = [req(f"q{i}") for i in range(10)]
    dying = FakeBackend(die_after=7)
    with pytest.raises(RuntimeError, match="died"):
        generate_cached(dying, requests, FAST, cache, progress=False, chunk_size=3)
    assert len(GenerationCache(cache)) == 6  # two whole chunks were saved before the death
    again = FakeBackend()
    out = generate_cached(again, requests, FAST, cache, progress=False, chunk_size=3)
    assert [r.messages[-1]["content"] for r in again.sent] == [f"q{i}" for i in range(6, 10)]
    assert out == [f"t@v1|q{i}|0" for i in range(10)]
    third = FakeBackend()
    assert generate_cached(third, requests, FAST, cache, progress=False) == out and not third.sent


def test_generate_cached_sends_duplicates_once_and_keeps_order(tmp_path):
    backend = FakeBackend()
    out = generate_cached(backend, [req("a"), req("b"), req("a")], FAST, tmp_path / "c.jsonl", progress=False)
    assert out == ["t@v1|a|0", "t@v1|b|0", "t@v1|a|0"] and len(backend.sent) == 2


def test_generate_cached_new_params_are_new_requests(tmp_path):
    cache, backend = tmp_path / "c.jsonl", FakeBackend()
    generate_cached(backend, [req("a")], FAST, cache, progress=False)
    generate_cached(backend, [req("a")], SamplingParams(temperature=0.0, max_tokens=16, seed=5), cache,
                    progress=False)
    generate_cached(FakeBackend(model="m2"), [req("a")], FAST, cache, progress=False)
    assert len(backend.sent) == 2 and len(GenerationCache(cache)) == 3


def test_cache_ignores_a_torn_last_line_and_repairs_it_on_append(tmp_path):
    path = tmp_path / "c.jsonl"
    GenerationCache(path).put_many([("k1", "one"), ("k2", "two ☃")])
    with open(path, "ab") as f:
        f.write('{"key": "k3", "text": "thr☃'.encode()[:-1])  # cut inside a multi-byte character
    cache = GenerationCache(path)
    assert len(cache) == 2 and cache.get("k2") == "two ☃" and cache.get("k3") is None
    cache.put_many([("k4", "four")])
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(ln)["key"] for ln in lines] == ["k1", "k2", "k4"]
    assert GenerationCache(path).get("k4") == "four"


def test_cache_refuses_a_bad_line_in_the_middle(tmp_path):
    from persrm_core.errors import InputError

    path = tmp_path / "c.jsonl"
    path.write_text('{"key": "a", "text": "x"}\nnot json\n{"key": "b", "text": "y"}\n')
    with pytest.raises(InputError, match="line 2"):
        GenerationCache(path)


def test_generate_cached_progress_bar_starts_at_the_cached_count(tmp_path, capsys):
    cache, requests = tmp_path / "c.jsonl", [req(f"q{i}") for i in range(4)]
    generate_cached(FakeBackend(), requests[:3], FAST, cache, progress=False)
    generate_cached(FakeBackend(), requests, FAST, cache, progress=True)
    err = capsys.readouterr().err
    assert "3/4" in err and "4/4" in err


# --- make_backend, vLLM -----------------------------------------------------------------------------

def test_make_backend_kinds(monkeypatch):
    assert make_backend("rules") is None
    b = make_backend("openai", base_url="http://127.0.0.1:1/v1", model="m")
    assert isinstance(b, OpenAIBackend) and b.name == "openai" and b.model == "m"
    with pytest.raises(ValueError, match="known: openai, rules, transformers, vllm"):
        make_backend("llamacpp")
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if vllm were not installed
    with pytest.raises(RuntimeError, match=r"pip install -e \.\[gpu\]"):
        make_backend("vllm", model="m")


def test_vllm_missing_names_the_gpu_extra(monkeypatch):
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm is installed")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match=r"gpu.*extra.*pip install -e \.\[gpu\]"):
        VLLMBackend("any-model")


def test_vllm_backend_generates(tmp_path):
    pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    from persrm_core.llm.model import TinyModelConfig, build_tiny

    path = build_tiny(TINY_TEXTS, tmp_path / "tiny", TinyModelConfig(vocab_size=400, hidden_size=128, num_layers=1,
                                                                      num_heads=2, num_kv_heads=1,
                                                                      intermediate_size=128, max_positions=256))
    backend = VLLMBackend(str(path), dtype="float32", gpu_memory_utilization=0.3)
    requests = [req("the cat sat"), req("a dog ran far away")]
    first = backend.generate(requests, FAST)
    assert len(first) == 2 and all(isinstance(t, str) for t in first)
    assert backend.generate(requests, FAST) == first


# --- transformers on a tiny offline model -------------------------------------------------------------

TINY_TEXTS = ["the cat sat on the mat and looked at the dog.", "a dog ran far away from home today!",
              "we wrote short notes about the weather, then went out."] * 4


@pytest.fixture(scope="module")
def tiny_backend(tmp_path_factory):
    from persrm_core.llm.model import TinyModelConfig, build_tiny

    cfg = TinyModelConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1,
                          intermediate_size=64, max_positions=256)
    path = build_tiny(TINY_TEXTS, tmp_path_factory.mktemp("tiny") / "model", cfg)
    return make_backend("transformers", model=str(path), batch_size=2)


def test_transformers_backend_greedy_is_deterministic_and_batch_independent(tiny_backend):
    assert isinstance(tiny_backend, TransformersBackend)
    requests = [req("the cat"), req("a dog ran far away from home, then"), req("we wrote")]
    params = SamplingParams(temperature=0.0, max_tokens=6)
    first = tiny_backend.generate(requests, params)
    assert len(first) == 3 and all(isinstance(t, str) for t in first)
    assert tiny_backend.generate(requests, params) == first
    # left padding: a request's greedy answer does not depend on its batch mates
    assert [tiny_backend.generate([r], params)[0] for r in requests] == first


def test_transformers_backend_sampling_is_seeded(tiny_backend):
    import torch

    requests = [req("the cat"), req("we wrote")]
    params = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=6, seed=3)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = tiny_backend.generate(requests, params)
    after = torch.rand(1)
    assert tiny_backend.generate(requests, params) == a
    assert torch.equal(before, after)  # the caller's RNG stream is untouched


# --- templates ---------------------------------------------------------------------------------------

def test_templates_render_system_and_user_messages():
    msgs = render("style_imitation", exemplars=["first sample text", "second {braced} sample"],
                  prompt="Once upon", n_words=40)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert "[1] first sample text\n[2] second {braced} sample" in msgs[1]["content"]
    assert "Once upon" in msgs[1]["content"] and "40 words" in msgs[1]["content"]
    msgs = render("random_style", exemplars=["x"], prompt="p", n_words=5, style_hint="a pirate's log")
    assert "a pirate's log" in msgs[1]["content"] and "NOT" in msgs[1]["content"]
    msgs = render("minimal_word_swap", text="keep this exactly", n_swaps=3)
    assert msgs[1]["content"].endswith("keep this exactly") and "exactly 3 single words" in msgs[1]["content"]
    assert all(TEMPLATES[s].id.endswith("@v1") for s in LLM_STRATEGIES)
    with pytest.raises(ValueError, match="missing.*n_swaps"):
        render("minimal_word_swap", text="t")
    with pytest.raises(ValueError, match="unexpected.*oops"):
        render("minimal_word_swap", text="t", n_swaps=3, oops=1)
    with pytest.raises(ValueError, match="unknown template"):
        render("nope")


def test_teacher_judge_reads_the_student_input_and_its_answer_format_parses():
    from persrm_core.judging.judge_format import RenderLimits, render_messages

    fields = dict(exemplars=["i write lowercase. always!", "no caps here, ever."], prompt="so today",
                  response_a="i went out. it was fun!", response_b="I went out. It was pleasant.")
    system, user = render("teacher_judge", **fields)
    assert system["content"].startswith(SYSTEM_PROMPT)
    for factor in ("tone", "structure", "vocabulary", "punctuation", "length", "stance"):
        assert factor in system["content"]
    student = render_messages(fields["exemplars"], fields["prompt"], fields["response_a"], fields["response_b"],
                              RenderLimits())
    assert user["content"] == student[1]["content"]
    example = system["content"].split("for example:\n")[-1]
    assert parse_verdict("Casing and exclamations match A.\n" + example).choice == "B"
    teacher_output = format_completion("Tone: A is casual like the exemplars; B is formal.", 8, 2, "A")
    assert parse_verdict(teacher_output).choice == "A"


# --- LLM negatives: validation rules -----------------------------------------------------------------

CHOSEN = ("i walked to the market this morning, and the light was soft.\n"
          "bought some apples and a loaf of bread, then wandered home slowly.")
EXEMPLAR = ("the river was quiet when we got there, and nobody else was around. "
            "we sat on the rocks for an hour and talked about nothing much at all.")
TASK = Task("t1", "alice", "so here is my day:", CHOSEN, "train")


def test_changed_words():
    assert changed_words("a b c", "a  b\nc") == []
    assert changed_words("the big red dog", "the large red hound") == [("big", "large"), ("dog", "hound")]
    assert changed_words("a b c", "a b c d") is None
    assert changed_words("a b c", "a c") is None


def test_clean_output_strips_preambles_and_quotes_conservatively():
    assert clean_output('Here is the rewritten text:\n"a b c"') == "a b c"
    assert clean_output("Sure! Here's a continuation in the author's style: well then") == "well then"
    assert clean_output("Here's the thing: nobody asked") == "Here's the thing: nobody asked"  # no meta word
    assert clean_output("“curly quoted”") == "curly quoted"
    assert clean_output('"she said" and "he said"') == '"she said" and "he said"'  # inner quotes: kept
    assert clean_output("Here is why: it works", reference="Here is why: it works fine") == "Here is why: it works"
    assert clean_output('"quoted"', reference='"quoted" too') == '"quoted"'
    assert clean_output("so here is my day: and more", prompt="so here is my day:") == "and more"


def test_copy_share():
    assert copy_share(EXEMPLAR, EXEMPLAR) == 1.0
    assert copy_share("entirely different words that share nothing with it at all, truly none", EXEMPLAR) == 0.0
    assert copy_share("short", EXEMPLAR) == 0.0  # under 8 words: no 8-grams
    long_output = "x " * 100 + "we sat on the rocks for an hour and talked"
    assert copy_share(long_output, EXEMPLAR) > 0.05  # a copied sentence counts whichever text is longer


SWAP_3 = CHOSEN.replace("walked", "strolled").replace("soft.", "gentle.").replace("loaf", "bun")


@pytest.mark.parametrize("strategy,output,expected", [
    ("style_imitation", "we got to the shop early and the sky was pale. picked up pears, wandered back.", None),
    ("style_imitation", EXEMPLAR, "copies_exemplar"),
    ("style_imitation", "  ", "empty"),
    ("style_imitation", CHOSEN.replace("\n", " "), "identical"),
    ("random_style", "BREAKING: Local Resident Acquires Produce In Stunning Morning Expedition.", None),
    ("random_style", "", "empty"),
    ("random_style", "Here it is: " + EXEMPLAR, "copies_exemplar"),
    ("minimal_word_swap", SWAP_3, None),
    ("minimal_word_swap", SWAP_3.replace("apples", "fruit"), None),  # 4 swaps
    ("minimal_word_swap", CHOSEN.replace("walked", "strolled").replace("loaf", "bun"), "swap_count"),
    ("minimal_word_swap", SWAP_3.replace("apples", "fruit").replace("home", "back"), "swap_count"),
    ("minimal_word_swap", SWAP_3 + " extra", "not_word_swap"),
    ("minimal_word_swap", SWAP_3.replace("morning,", "morning;"), "not_word_swap"),  # punctuation changed
    ("minimal_word_swap", SWAP_3.replace("i strolled", "I strolled"), "not_word_swap"),  # case-only change
    ("minimal_word_swap", CHOSEN, "identical"),
])
def test_validation_rules(strategy, output, expected):
    text, reason = validate(strategy, output, TASK, [EXEMPLAR])
    assert reason == expected
    assert (text is None) == (expected is not None)


def test_word_swap_keeps_the_chosen_whitespace_and_drops_wrappers():
    text, reason = validate("minimal_word_swap", 'Here is the rewritten text:\n"' + SWAP_3.replace("\n", " ") + '"',
                            TASK, [EXEMPLAR])
    assert reason is None and text == SWAP_3  # the line break of the chosen text is back


def test_llm_negatives_with_canned_outputs(tmp_path):
    other = Task("t2", "bob", "The quarterly figures", "Revenue rose by four percent on the back of strong "
                 "demand in the northern region, while costs held steady across the board.", "train")
    swap_other = other.continuation.replace("rose", "grew").replace("strong", "robust").replace("steady", "stable")
    canned = {  # (task, strategy, sample) -> output
        (0, "style_imitation", 0): "we got to the shop early and the sky was pale. picked up pears, wandered back.",
        (0, "style_imitation", 1): EXEMPLAR,  # copies
        (0, "random_style", 0): ("Sure, here is a continuation in a pirate voice:\n"
                                 "Ahoy! The market be a grand place, matey."),
        (0, "random_style", 1): "Ahoy! The market be a grand place, matey.",  # duplicate of sample 0
        (0, "minimal_word_swap", 0): SWAP_3,
        (0, "minimal_word_swap", 1): CHOSEN,  # identical
        (1, "style_imitation", 0): "",
        (1, "style_imitation", 1): "Margins widened slightly as input prices eased over the period.",
        (1, "random_style", 0): "omg numbers went up lol",
        (1, "random_style", 1): "omg numbers went up lol!!",
        (1, "minimal_word_swap", 0): swap_other,
        (1, "minimal_word_swap", 1): "Revenue grew.",
    }
    backend = FakeBackend(canned=lambda r: canned[(r.meta["task"], r.meta["strategy"], r.meta["k"])])
    counts = {"style_imitation": 2, "random_style": 2, "minimal_word_swap": 2}
    kept, dropped = llm_negatives([TASK, other], [[EXEMPLAR], ["Sales were flat in the south again."]], counts,
                                  backend, FAST, tmp_path / "neg.jsonl", progress=False)
    assert [(i, s) for i, s, _ in kept] == [
        (0, "style_imitation"), (0, "random_style"), (0, "minimal_word_swap"),
        (1, "style_imitation"), (1, "random_style"), (1, "random_style"), (1, "minimal_word_swap")]
    assert kept[1][2] == "Ahoy! The market be a grand place, matey."
    assert kept[2][2] == SWAP_3
    assert dropped == {"empty": 1, "identical": 1, "copies_exemplar": 1, "not_word_swap": 1, "swap_count": 0,
                       "duplicate": 1}
    # the k-th samples used seed + k, and a second run is served from the cache
    assert {r.meta["k"] for r in backend.sent} == {0, 1}
    again = FakeBackend(canned=backend.canned)
    assert llm_negatives([TASK, other], [[EXEMPLAR], ["Sales were flat in the south again."]], counts,
                         again, FAST, tmp_path / "neg.jsonl", progress=False) == (kept, dropped)
    assert not again.sent


def test_llm_negatives_rejects_unknown_strategies_and_no_backend(tmp_path):
    with pytest.raises(ValueError, match="unknown LLM negative strategies"):
        llm_negatives([TASK], [[EXEMPLAR]], {"cross_author": 1}, FakeBackend(), FAST, tmp_path / "c", False)
    with pytest.raises(ValueError, match="backend"):
        llm_negatives([TASK], [[EXEMPLAR]], {"random_style": 1}, None, FAST, tmp_path / "c", False)


def test_llm_negatives_end_to_end_through_the_http_server(server, keyed, tmp_path):
    """The whole path: templates -> OpenAI client -> local server -> cache -> validation."""
    def reply(body):
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        if "copy editor" in system:  # minimal_word_swap: swap three words of the given text
            text = user.split("Text:\n", 1)[1]
            return "Here is the rewritten text:\n" + text.replace("walked", "strolled").replace(
                "soft.", "gentle.").replace("loaf", "bun")
        if "imitate" in system:
            return "we got to the shop early and the sky was pale. picked up pears, wandered back."
        return '"' + "A FORMAL NOTICE: the resident has returned from the market." + '"'

    server.reply = reply
    backend = make_backend("openai", base_url=server.url, model="test-model", api_key_env=KEY_ENV, backoff_s=0.01)
    counts = {s: 1 for s in LLM_STRATEGIES}
    kept, dropped = llm_negatives([TASK], {"t1": [EXEMPLAR]}, counts, backend, FAST, tmp_path / "c.jsonl",
                                  progress=False)
    assert kept == [(0, "style_imitation", "we got to the shop early and the sky was pale. picked up pears, "
                                           "wandered back."),
                    (0, "random_style", "A FORMAL NOTICE: the resident has returned from the market."),
                    (0, "minimal_word_swap", SWAP_3)]
    assert sum(dropped.values()) == 0
    assert len(server.calls) == 3
    assert all(c["headers"]["Authorization"] == f"Bearer {KEY}" for c in server.calls)
    swap_call = next(c for c in server.calls if "copy editor" in c["body"]["messages"][0]["content"])
    assert CHOSEN in swap_call["body"]["messages"][1]["content"]
