"""The judge's measurement: labelled pairs in their published schemas, the length rule and the
length-balanced subset, the one-pass Yes/No score, the score-based judges, and the
length-controlled win rate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES
from test_evaluation import CHOSEN, QUESTIONS, REJECTED, ScriptedJudge
from test_generator_http import echo_reply, make_server, params  # noqa: F401 (a fixture)

from recast.errors import RecastError
from recast.evaluation.agreement import (
    is_balanced,
    longer_wins,
    measure,
    read_labelled_pairs,
)
from recast.evaluation.judge import EnsembleJudge, Judged, PointwiseJudge, RewardJudge
from recast.evaluation.length_control import length_controlled_win_rate
from recast.records import PreferencePair

BPO = SAMPLES / "eval-samples" / "bpo_test.json"
HH = SAMPLES / "hh-rlhf" / "helpful-base-test.jsonl.gz"


def test_labelled_pairs_are_read_in_their_published_schemas() -> None:
    bpo = read_labelled_pairs(BPO)
    raw = json.loads(BPO.read_text())
    assert len(bpo) == len(raw) == 20
    assert bpo[2].prompt == raw[2]["prompt"] and bpo[2].chosen == raw[2]["good_res"]
    assert bpo[2].rejected == raw[2]["bad_res"]
    hh = read_labelled_pairs(HH, limit=5)
    assert len(hh) == 5 and all(p.source == "hh_rlhf" for p in hh)
    assert not hh[0].prompt.startswith("\n\nHuman:") and hh[0].chosen != hh[0].rejected


def test_a_malformed_record_is_named_by_file_and_line(tmp_path: Path) -> None:
    raw = json.loads(BPO.read_text())
    lines = [json.dumps(raw[0]), json.dumps({**raw[1], "bad_res": ""}), json.dumps(raw[2])]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecastError, match=r"pairs\.jsonl:2: field 'bad_res' is missing"):
        read_labelled_pairs(path)
    (tmp_path / "other.json").write_text(json.dumps([{"question": "q", "answer": "a"}]))
    with pytest.raises(RecastError, match=r"other\.json#0: not a labelled pair"):
        read_labelled_pairs(tmp_path / "other.json")


def pair(better_words: int, worse_words: int) -> PreferencePair:
    """A hand-made pair whose answers are only lengths: what the length rule sees."""
    return PreferencePair(
        "test", "q", " ".join(["b"] * better_words), " ".join(["w"] * worse_words)
    )


def test_the_length_rule_and_the_balanced_subset_on_a_hand_made_case() -> None:
    pairs = [
        pair(100, 10),  # better much longer: the rule wins, not balanced
        pair(10, 100),  # better shorter: the rule loses, balanced
        pair(100, 90),  # within 20 %: balanced, the rule still picks the better one
        pair(50, 50),  # equal: the rule cannot choose (a miss), balanced
        pair(130, 100),  # 23 % longer: not balanced
    ]
    assert [longer_wins(p.chosen, p.rejected) for p in pairs] == [True, False, True, None, True]
    assert [is_balanced(p.chosen, p.rejected) for p in pairs] == [False, True, True, True, False]

    class Shorter:  # a judge that always prefers the shorter answer
        def judge(self, questions, ours, other):
            return RewardJudge(_Lengths(sign=-1)).judge(questions, ours, other)

    m = measure(Shorter(), pairs)
    assert m.n == 5 and m.length_baseline == pytest.approx(3 / 5)
    assert m.balanced_n == 3 and m.balanced_length_baseline == pytest.approx(1 / 3)
    assert m.agreement == pytest.approx(1 / 5)  # only the pair whose better answer is shorter
    assert m.ties == pytest.approx(1 / 5) and m.agreement_non_ties == pytest.approx(1 / 4)
    assert m.balanced_agreement == pytest.approx(1 / 3)
    assert m.position_consistency is None  # one answer at a time: no order to flip
    # judge − rule per pair: 0 - 1, 1 - 0, 0 - 1, 0 - 0, 0 - 1 -> -2/5 = -40 points
    assert m.vs_length["value"] == pytest.approx(-40.0)
    lo, hi = m.vs_length["ci95"]
    assert -100 <= lo < -40 < hi <= 20


def test_judge_minus_length_rule_interval_says_when_the_judge_beats_length() -> None:
    """Paired over the same pairs: a judge equal to the rule is 0 [0, 0]; one right on 30
    balanced pairs the rule misses and equal elsewhere leads with an interval above 0; at 3
    such pairs of 10 the interval still includes 0."""
    rule_like = measure(RewardJudge(_Lengths()), [pair(100, 10)] * 10 + [pair(10, 100)] * 10)
    assert rule_like.vs_length["value"] == 0 and rule_like.vs_length["ci95"] == (0.0, 0.0)
    assert rule_like.vs_length["excludes_zero"] is False

    class Oracle:  # knows which answer is better: the `chosen` one
        def judge(self, questions, ours, other):
            return Judged(["win"] * len(ours), consistent=None)

    many = measure(Oracle(), [pair(10, 100)] * 30 + [pair(100, 10)] * 30)
    assert many.vs_length["value"] == pytest.approx(50.0) and many.vs_length["excludes_zero"]
    few = measure(Oracle(), [pair(10, 100)] + [pair(100, 10)] * 9)
    assert few.vs_length["value"] == pytest.approx(10.0) and not few.vs_length["excludes_zero"]


class _Lengths:
    """A 'reward model' that scores an answer by its length (sign=-1: by its shortness)."""

    def __init__(self, sign: int = 1) -> None:
        self.sign = sign

    def score(self, questions: list[str], answers: list[str]) -> list[float]:
        return [self.sign * float(len(a.split())) for a in answers]


class _Batched(_Lengths):
    """Length, plus a trace of which internal batch of 3 scored the answer: what padding does
    to a real reward model's last bits."""

    def score(self, questions: list[str], answers: list[str]) -> list[float]:
        lengths = super().score(questions, answers)
        return [v + 1e-6 * (i // 3) for i, v in enumerate(lengths)]


def test_identical_answers_tie_however_the_reward_model_batches() -> None:
    """Ours and the other system gave the same answer: a tie, for the reward judge and the
    ensemble, whatever the reward model's batching adds to the last bits."""
    pairs = read_labelled_pairs(BPO, limit=5)
    questions, answers = [p.prompt for p in pairs], [p.chosen for p in pairs]
    for judge in (RewardJudge(_Batched()), EnsembleJudge([RewardJudge(_Batched())])):
        assert judge.judge(questions, answers, answers).outcomes == ["tie"] * len(pairs)
    different = RewardJudge(_Batched()).judge(questions, answers, [p.rejected for p in pairs])
    assert "tie" not in different.outcomes  # the real pairs still get verdicts


def test_measure_on_real_pairs_matches_the_rule_for_a_length_judge() -> None:
    """A judge that is the length rule agrees exactly as often as the rule does."""
    pairs = read_labelled_pairs(BPO)
    m = measure(RewardJudge(_Lengths()), pairs)
    assert m.agreement == m.length_baseline
    assert m.balanced_agreement == m.balanced_length_baseline
    assert 0 < m.balanced_n < m.n


class OnePass(ScriptedJudge):
    """A backend with both first-token log-probs in one pass: P(Yes) 0.8 for a prompt holding a
    real chosen answer, 0.3 otherwise; it records every prompt it runs."""

    def first_token_logprobs(self, prompts, options):
        self.prompts += prompts
        good = [any(c[:40] in p for c in CHOSEN) for p in prompts]
        return [[math.log(0.8 if g else 0.3), math.log(0.2 if g else 0.6)] for g in good]


def test_pointwise_judge_reads_yes_and_no_from_one_pass() -> None:
    backend = OnePass(lambda p, t: pytest.fail("the one-pass backend was scored twice"))
    judge = PointwiseJudge(backend)
    assert judge.p_good(QUESTIONS[:1], CHOSEN[:1])[0] == pytest.approx(0.8)
    rows = zip(QUESTIONS, CHOSEN, REJECTED, strict=True)
    m = measure(judge, [PreferencePair("t", q, c, r) for q, c, r in rows])
    assert m.agreement == 1.0 and m.ties == 0.0


def test_pointwise_judge_store_scores_each_prompt_once_across_runs(tmp_path: Path) -> None:
    """A second judge on the same store runs no prompt it already scored, returns the same
    log-odds, and scores only what is new; another judge's key starts afresh."""
    store = tmp_path / "judge_scores.json"
    first_backend = OnePass(None)
    first = PointwiseJudge(first_backend, store=store, store_key="qwen").log_odds(
        QUESTIONS[:2], CHOSEN[:2]
    )
    assert len(first_backend.prompts) == 2 and store.exists()

    again_backend = OnePass(None)
    again = PointwiseJudge(again_backend, store=store, store_key="qwen")
    assert again.log_odds(QUESTIONS[:2], CHOSEN[:2]) == first
    assert again_backend.prompts == []  # nothing run twice
    again.log_odds(QUESTIONS[:3], REJECTED[:1] + CHOSEN[1:3])  # one known, two new
    assert len(again_backend.prompts) == 2
    assert len(json.loads(store.read_text())["log_odds"]) == 4

    other_backend = OnePass(None)
    PointwiseJudge(other_backend, store=store, store_key="another judge").log_odds(
        QUESTIONS[:2], CHOSEN[:2]
    )
    assert len(other_backend.prompts) == 2


def test_pointwise_judge_cuts_answers_to_its_word_budget() -> None:
    judge = PointwiseJudge(ScriptedJudge(lambda p, t: 0.0), max_answer_words=5)
    long = "one two three four five six seven"
    assert "one two three four five …" in judge.prompt("q", long)
    assert "six" not in judge.prompt("q", long)
    assert long in PointwiseJudge(ScriptedJudge(lambda p, t: 0.0), max_answer_words=None).prompt(
        "q", long
    )


def test_ensemble_standardizes_each_scorer() -> None:
    class Fixed:
        def __init__(self, values):
            self.values = values

        def scores(self, questions, answers):
            return self.values

    # scorer 1 prefers answer 0 by a huge margin in its units, scorer 2 prefers answer 1 by a
    # little in its own: after z-scoring they weigh alike, so the sum is a dead heat
    ens = EnsembleJudge([Fixed([1000.0, 0.0]), Fixed([0.0, 0.001])])
    s = ens.scores(["q", "q"], ["a", "b"])
    assert s[0] == pytest.approx(s[1], abs=1e-9)


class _ByAnswer:
    """A scorer with a score per answer text; it records which answers it was asked about."""

    def __init__(self, score: dict[str, float]) -> None:
        self.score, self.asked = score, []

    def scores(self, questions: list[str], answers: list[str]) -> list[float]:
        self.asked += answers
        return [self.score[a] for a in answers]


def test_cascade_routes_only_the_cheap_scorers_closest_pairs_to_the_others() -> None:
    pairs = read_labelled_pairs(BPO, limit=4)
    questions = [p.prompt for p in pairs]
    good, bad = [p.chosen for p in pairs], [p.rejected for p in pairs]
    # the reward model: wide margins for pairs 0 and 1 (right), narrow ones for 2 and 3 (wrong)
    reward = _ByAnswer(
        {good[0]: 3.0, bad[0]: -3.0, good[1]: 2.5, bad[1]: -2.5}
        | {good[2]: -0.1, bad[2]: 0.1, good[3]: -0.2, bad[3]: 0.2}
    )
    # the LLM is sure of the right answer on every pair it is asked about
    llm = _ByAnswer({a: 1.0 for a in good} | {a: -1.0 for a in bad})
    judged = EnsembleJudge([reward, llm], share=0.5).judge(questions, good, bad)
    assert judged.outcomes == ["win"] * 4  # 2 and 3 overturned by the LLM
    assert sorted(llm.asked) == sorted([good[2], good[3], bad[2], bad[3]])
    # with no LLM on a pair the reward model's verdict stands, right or wrong
    llm.asked = []
    judged = EnsembleJudge([reward, llm], share=0.25).judge(questions, good, bad)
    # pair 2 is the reward's closest and is overturned; pair 3 keeps the reward's wrong verdict
    assert judged.outcomes == ["win", "win", "win", "loss"]
    assert sorted(llm.asked) == sorted([good[2], bad[2]])


def test_cascade_spends_no_llm_call_on_a_pair_with_the_same_answer_twice() -> None:
    pairs = read_labelled_pairs(BPO, limit=4)
    questions = [p.prompt for p in pairs]
    good, bad = [p.chosen for p in pairs], [p.rejected for p in pairs]
    other = [good[0], *bad[1:]]  # pair 0: ours and the other system gave the same answer
    reward = _ByAnswer(
        {good[0]: 0.0}
        | {good[i]: -0.1 * i for i in (1, 2, 3)}
        | {bad[i]: 0.1 * i for i in (1, 2, 3)}
    )
    llm = _ByAnswer({a: 1.0 for a in good} | {a: -1.0 for a in bad})
    # 0.3 of the three pairs that differ is one: pair 1, the reward model's closest; pair 0's
    # margin is 0, and it would have taken the LLM's one call had it been counted
    judged = EnsembleJudge([reward, llm], share=0.3).judge(questions, good, other)
    assert judged.outcomes == ["tie", "win", "loss", "loss"]
    assert sorted(llm.asked) == sorted([good[1], bad[1]])
    # two systems that answered alike everywhere (ours and the ω = 0 ablation): all ties, no call
    llm.asked = []
    judged = EnsembleJudge([reward, llm], share=0.3).judge(questions, good, good)
    assert judged.outcomes == ["tie"] * 4 and llm.asked == []


@pytest.mark.parametrize("share", ["0", "1.5"])
def test_a_judge_llm_share_outside_0_1_is_refused_by_name(share: str) -> None:
    from recast.config import load_params
    from recast.evaluation.judging import judge_from

    bad = load_params(None, [f"evaluate.judge_llm_share={share}"])
    with pytest.raises(RecastError, match="evaluate.judge_llm_share"), judge_from(bad):
        pass


def test_cascade_at_share_one_is_the_plain_ensemble() -> None:
    pairs = read_labelled_pairs(BPO)
    questions = [p.prompt for p in pairs]
    good, bad = [p.chosen for p in pairs], [p.rejected for p in pairs]
    reward = _ByAnswer({a: float(len(a)) for a in good + bad})
    llm = _ByAnswer({a: float(a.count("e")) - float(a.count("a")) for a in good + bad})
    plain = EnsembleJudge([reward, llm]).judge(questions, good, bad).outcomes
    scores = EnsembleJudge([reward, llm]).scores(questions * 2, good + bad)
    n = len(pairs)
    assert plain == ["win" if scores[i] > scores[n + i] else "loss" for i in range(n)]
    assert EnsembleJudge([reward, llm], share=1.0).judge(questions, good, bad).outcomes == plain
    with pytest.raises(ValueError, match="share"):
        EnsembleJudge([reward, llm], share=0.0)


def test_one_pass_yes_no_equals_two_passes(smollm2: str) -> None:
    """The same P(Yes) from one forward pass as from scoring "Yes" and "No" separately."""
    from recast.config import GeneratorParams
    from recast.generator.local import LocalGenerator

    generator = LocalGenerator(GeneratorParams(model=smollm2, batch_size=4))
    pairs = read_labelled_pairs(BPO, limit=3)
    questions = [p.prompt for p in pairs] * 2
    answers = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    one = PointwiseJudge(generator).p_good(questions, answers)

    class TwoPass:  # the same backend without its one-pass method: the judge scores twice
        score = staticmethod(generator.score)

    two = PointwiseJudge(TwoPass()).p_good(questions, answers)  # type: ignore[arg-type]
    assert np.allclose(one, two, atol=1e-5)
    assert len(set(np.round(one, 6))) > 1  # the answers are told apart


def test_length_controlled_win_rate_when_length_alone_explains_the_wins() -> None:
    """Ours wins exactly when its answer is longer, and is longer half the time: the raw win
    rate is 50 % either way, but here every win comes with +length; at equal lengths the
    model must predict about a coin flip."""
    rng = np.random.default_rng(0)
    delta = rng.normal(0, 50, size=400)
    len_other = np.full(400, 200.0)
    len_ours = len_other + delta
    # the judge prefers the longer answer with a probability that rises with the difference
    p_win = 1 / (1 + np.exp(-delta / 20))
    outcomes = ["win" if u < p else "loss" for u, p in zip(rng.random(400), p_win, strict=True)]
    lc = length_controlled_win_rate(outcomes, len_ours, len_other)
    assert lc == pytest.approx(50, abs=5)

    # a judge swayed by length alone (in the model's own tanh form) on a system that always
    # answers longer: raw wins soar, the LC win rate stays near 50
    delta = np.abs(delta)
    p_win = 1 / (1 + np.exp(-3 * np.tanh(delta / delta.std())))
    outcomes = ["win" if u < p else "loss" for u, p in zip(rng.random(400), p_win, strict=True)]
    raw = 100 * outcomes.count("win") / len(outcomes)
    lc = length_controlled_win_rate(outcomes, len_other + delta, len_other)
    assert raw > 80
    assert lc == pytest.approx(50, abs=12)

    # a system that wins regardless of length keeps its high LC win rate
    outcomes = ["win" if u < 0.8 else "loss" for u in rng.random(400)]
    lc = length_controlled_win_rate(outcomes, len_other + delta, len_other)
    assert lc == pytest.approx(80, abs=6)


def test_length_nuisance_absorbs_length_and_stays_out_of_the_score(minilm: str) -> None:
    """On Alpaca-GPT4 pairs (the GPT-4 answer is the longer one in most), β·log(1 + |y|) takes
    a positive weight during training; `score` is the encoder's reward alone."""
    import torch

    from recast.data import alpaca_gpt4
    from recast.data.raw import read_records
    from recast.evaluation.reward import RewardModel, train_reward

    path = SAMPLES / "alpaca-gpt4" / "comparison_gpt4_data_en.json"
    pairs = [p for p in alpaca_gpt4.to_pairs(read_records(path)) if isinstance(p, PreferencePair)]
    pairs = pairs[:48]
    longer = sum(len(p.chosen.split()) > len(p.rejected.split()) for p in pairs) / len(pairs)
    assert longer > 0.7  # the premise: in this data the preferred answer is mostly the longer
    model = RewardModel.from_encoder(minilm, max_length=32, length_nuisance=True)
    train_reward(model, pairs, epochs=2, lr=1e-4, batch_size=8)
    assert float(model.beta) > 0.05
    questions, answers = [p.prompt for p in pairs[:4]], [p.chosen for p in pairs[:4]]
    with torch.no_grad():
        encoder_only = model(questions, answers).tolist()
    assert model.score(questions, answers) == pytest.approx(encoder_only, abs=1e-5)
    plain = RewardModel.from_encoder(minilm, max_length=32)
    assert not plain.beta.requires_grad and float(plain.beta) == 0.0


def test_a_large_judge_behind_http_is_measured_like_a_local_one(make_server) -> None:  # noqa: F811
    """The pointwise judge on the http backend (a large model behind vLLM or an API): P(Yes) by
    scoring "Yes" and "No" through /completions echo, against a local fake server that plays a
    judge preferring the labelled better answer of real BPO-test pairs."""
    from recast.generator.http import HttpGenerator

    pairs = read_labelled_pairs(BPO, limit=6)
    better = [p.chosen[:60] for p in pairs]

    def judge_server(path: str, body: dict) -> tuple[int, str]:
        text = body["prompt"]
        if text.endswith("Yes"):
            head, target = text[:-3], "Yes"
        else:
            head, target = text[:-2], "No"
        good = any(b in head for b in better)
        lp = math.log(0.9 if (target == "Yes") == good else 0.1)
        return 200, echo_reply([head, target], [None, lp])

    server = make_server(judge_server)
    with HttpGenerator(params([server.url])) as backend:
        m = measure(PointwiseJudge(backend), pairs)
    assert m.agreement == 1.0 and m.ties == 0.0 and m.n == 6
    assert len(server.requests) == 2 * 2 * 6  # Yes and No, for both answers of each pair
    assert all(path == "/v1/completions" for path, _, _ in server.requests)


def test_judge_measure_cli_writes_the_figures(tiny_lm: str, in_tmp: Path) -> None:
    """`recast judge measure --pairs FILE --json OUT` with the judge params configure (here a
    tiny random LM as the pointwise judge: the figures' bookkeeping, not a judge's quality)."""
    from conftest import ROOT
    from test_cli import run

    shutil_params = (ROOT / "params.yaml").read_text()
    (in_tmp / "params.yaml").write_text(shutil_params)
    code, output = run(
        "judge", "measure", "--pairs", str(BPO), "--limit", "6", "--json", "judge.json",
        "--set", f"evaluate.judge_model={tiny_lm}", "--set", "evaluate.judge_mode=pointwise",
    )  # fmt: skip
    assert code == 0, output
    figures = json.loads((in_tmp / "judge.json").read_text())
    keys = {"n", "agreement", "ties", "agreement_non_ties", "position_consistency", "unparsed",
            "length_baseline", "balanced_n", "balanced_agreement", "balanced_length_baseline",
            "seconds_per_pair"}  # fmt: skip
    assert keys <= set(figures) and figures["n"] == 6
    pairs = read_labelled_pairs(BPO, limit=6)
    rule = [longer_wins(p.chosen, p.rejected) for p in pairs]
    assert figures["length_baseline"] == pytest.approx(sum(r is True for r in rule) / 6)
    assert figures["balanced_n"] == sum(is_balanced(p.chosen, p.rejected) for p in pairs)
    assert figures["position_consistency"] is None and figures["unparsed"] == 0
    assert "longer wins" in output

    code, output = run("judge", "measure", "--pairs", "missing.json")
    assert code == 1 and "labelled pairs file not found: missing.json" in output
