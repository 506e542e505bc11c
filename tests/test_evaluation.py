"""Downstream evaluation: pass@k, HumanEval execution, GSM8K answers and fine-tuning masks,
BIG-bench Lite scoring and split, and `ncalab eval --task` end to end on real models and data."""

import json
import math
import random
from pathlib import Path

import pytest

from conftest import BBL, GSM8K, MICRO, WIKITEXT
from ncalab.cli.main import main
from ncalab.errors import NcalabError
from ncalab.evals import bbl, gsm8k, humaneval
from ncalab.evals.passk import pass_at_k
from ncalab.experiment.reporting import SilentReporter
from ncalab.nca.tokens import IGNORE_INDEX
from ncalab.store import RunStore
from ncalab.train.batches import pack_examples



def bbl_tasks(folder: Path) -> set[str]:
    """The top-level tasks of a BIG-bench Lite folder, read off its files."""
    return {f.relative_to(folder).parts[0] for f in folder.glob("**/task.json*")}


@pytest.mark.parametrize("n, c, k", [(10, 0, 1), (10, 10, 5), (10, 3, 1), (10, 3, 4), (64, 5, 8), (5, 4, 2), (1, 1, 1)])
def test_pass_at_k_is_the_closed_form(n, c, k):
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_bounds_and_errors():
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 8, 1) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    with pytest.raises(NcalabError, match="1 <= k <= samples"):
        pass_at_k(4, 1, 5)
    with pytest.raises(NcalabError):
        pass_at_k(0, 0, 1)  # no samples is never a score


def test_humaneval_canonical_solutions_pass_and_wrong_ones_fail():
    problems = humaneval.load_problems()
    assert len(problems) == 164
    for p in random.Random(0).sample(problems, 12):
        assert humaneval.check(p, p.canonical_solution, timeout=10).passed, p.task_id
    p = problems[0]
    assert not humaneval.check(p, "    return None\n").passed
    # a completion is cut at the next top-level statement, so trailing junk does not count against it
    assert humaneval.check(p, p.canonical_solution + "\ndef junk(:\n").passed


def test_runaway_programs_are_stopped_and_scored_as_failures(tmp_path):
    p = humaneval.load_problems()[0]
    loop = humaneval.check(p, "    while True:\n        pass\n", timeout=1.0)
    assert not loop.passed and loop.status == "timeout"
    outside = tmp_path / "escaped.txt"
    escape = humaneval.check(p, f"    open({str(outside)!r}, 'w').write('x')\n    return True\n")
    assert not escape.passed and "outside the sandbox" in escape.detail and not outside.exists()
    assert not humaneval.check(p, "    import os\n    os.system('true')\n    return True\n").passed


def test_gsm8k_answers_are_extracted_and_checked_numerically():
    assert gsm8k.is_correct("She pays 3 * 5 = 15 dollars.\n#### 15", "15")
    assert gsm8k.is_correct("Total is 1,234 apples\n#### 1,234\n\nQuestion: ...", "1234")
    assert gsm8k.is_correct("#### $18 dollars", "18")
    assert gsm8k.is_correct("so the answer is 0.5", "0.5")  # no ####: the last number
    assert not gsm8k.is_correct("#### 16", "15")
    assert not gsm8k.is_correct("I do not know", "3")
    assert not gsm8k.is_correct("#### 15\n\nQuestion: how many?\nAnswer:\n#### 99", "99")  # the first #### counts
    train, test = gsm8k.load(GSM8K)
    problems = sum(1 for line in GSM8K.read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(train) + len(test) == problems and 0.07 < len(test) / problems < 0.13
    assert {p.question for p in train}.isdisjoint({p.question for p in test})
    assert all(gsm8k.is_correct(f"{p.solution}\n#### {p.answer}", p.answer) for p in test[:50])


def test_fine_tuning_loss_covers_exactly_the_answer_tokens():
    examples = [([1, 2, 3], [10, 11]), ([4, 5], [12, 13, 14]), ([6], [15])]
    inputs, targets = pack_examples(examples, length=20, eos=99, pad=0)
    assert inputs.shape == (1, 20)  # several examples packed into one row
    flat = [1, 2, 3, 10, 11, 99, 4, 5, 12, 13, 14, 99, 6, 15, 99]
    assert list(inputs[0, : len(flat)]) == flat
    kept = [int(t) for t in targets[0] if t != IGNORE_INDEX]
    assert kept == [10, 11, 99, 12, 13, 14, 99, 15, 99]  # every answer token and its end, no prompt token
    many = pack_examples(examples * 5, length=8, eos=99)
    assert many[0].shape[1] == 8 and len(many[0]) > 1


def test_bbl_split_is_bigbench_and_scores_follow_the_rules():
    examples = list(range(100))
    train, val = bbl.split(examples)
    order = list(range(100))
    random.Random(42).shuffle(order)
    assert val == order[80:] and train == order[:80]
    assert len(bbl.split(list(range(30)))[1]) == 16  # at least 16 validation examples
    subs = bbl.load(BBL)
    assert {s.task for s in subs} == bbl_tasks(BBL) and all(len(s.validation) >= 1 for s in subs)
    item = bbl.Item("t/0", "t", "Q: 2+2?\nA: ", ("4",), 0, "4")
    assert bbl.is_correct(item, " 4\nQ: next") and not bbl.is_correct(item, "5")
    # choice tasks are normalised for chance: 4 choices, half right -> (0.5 - 0.25) / 0.75
    assert bbl.task_score([1.0, 0.0], [4, 4]) == pytest.approx(1 / 3)
    assert bbl.task_score([0.0, 0.25], [4, 4]) == 0.0  # below chance counts as 0
    assert bbl.task_score([1.0, 0.0, 1.0], [0, 0, 0]) == pytest.approx(2 / 3)  # exact match, not normalised
    with pytest.raises(NcalabError, match="no items were scored"):
        bbl.task_score([], [])


def test_bbl_difference_is_the_difference_of_the_scores_and_its_interval_covers_95_percent():
    """The BBL score is chance-normalised and clipped per subtask, so the arms' difference is
    that of their scores (not a mean of item differences), and the bootstrap interval must
    cover the true difference about 95% of the time. Two arms with the same true pass rates
    (true difference 0) on 3 tasks: 2 four-choice subtasks and 1 exact-match one."""
    from types import SimpleNamespace

    from ncalab.experiment.evaluation import TASKS

    task = TASKS["bbl"]
    items = [SimpleNamespace(item=f"{s}/{i}", subtask=s, choices=c)
             for s, c in (("a/x", 4), ("a/y", 4), ("b/z", 0)) for i in range(40)]
    rates = {"a/x": 0.45, "a/y": 0.6, "b/z": 0.3}
    rng = random.Random(5)
    covered, trials = 0, 200
    for _ in range(trials):
        arms = [{it.item: float(rng.random() < rates[it.subtask]) for it in items} for _ in range(2)]
        diff, ci = task.difference(*arms, items, resamples=400)
        assert diff == pytest.approx(task.score(arms[0], items) - task.score(arms[1], items), abs=1e-12)
        assert ci > 0
        covered += abs(diff) <= ci
    assert 0.88 <= covered / trials <= 0.995  # 95% nominal; a binomial sd of 1.5 points at 200 trials


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("eval") / "h"
    assert main(["run", "--corpus", str(WIKITEXT), "--home", str(home), "--json", *MICRO,
                 "--set", "stage2.seq_len=128"]) == 0
    return home, RunStore(home).list_experiments()[0].id


def _json(capsys, *args, stderr=""):
    code = main(list(args) + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    # nothing but ncalab's own words: no third-party progress bars or warnings
    assert (err == "") if not stderr else err.replace("\n", " ").startswith(stderr), err
    return json.loads(out.strip().splitlines()[-1])


# before the other tests evaluate the shared experiment (they store data paths in its config)
@pytest.mark.parametrize("args, message", [
    (["--task", "poetry"], "unknown evaluation task"),
    (["--task", "humaneval", "--samples", "2", "--k", "4", "--allow-code-execution"], "needs at least 4 samples"),
    (["--task", "gsm8k", "--data", "/no/such/file.jsonl"], "does not exist"),
    (["--task", "gsm8k"], "needs its data"),
    (["--task", "humaneval"], "--allow-code-execution"),
])
def test_bad_evaluations_are_one_line_errors_and_store_nothing(trained, capsys, args, message):
    home, exp_id = trained
    store = RunStore(home)
    before = (store.get_experiment(exp_id).config_json, [r.id for r in store.runs_of(exp_id)])
    code = main(["eval", exp_id, "--home", str(home), *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (store.get_experiment(exp_id).config_json, [r.id for r in store.runs_of(exp_id)]) == before


def test_eval_tasks_end_to_end_with_limits(trained, capsys):
    home, exp_id = trained
    res = _json(capsys, "eval", exp_id, "--home", str(home), "--task", "humaneval", "--limit", "3", "--samples", "4",
                "--k", "1,2", "--allow-code-execution", stderr="warning: running model-written code")
    he = res["downstream"]["humaneval"]
    assert set(he) == {"1", "2"} and he["1"]["items"] == 3 and 0 <= he["1"]["nca"] <= he["2"]["nca"] <= 1
    store = RunStore(home)
    runs = {r.kind: r for r in store.runs_of(exp_id)}
    items = store.eval_items(runs["humaneval-nca"].id)
    assert [i.samples for i in items] == [4, 4, 4]
    lines = (store.run_dir(runs["humaneval-nca"]) / "samples.jsonl").read_text().splitlines()
    assert [json.loads(x)["item"] for x in lines] == [i.item for i in items]
    # GSM8K fine-tunes each arm first (answers only in the loss), then samples
    res = _json(capsys, "eval", exp_id, "--home", str(home), "--task", "gsm8k", "--data", str(GSM8K), "--limit", "2",
                "--samples", "2", "--set", "eval.gsm8k.epochs=1")  # stderr stays empty
    assert res["downstream"]["gsm8k"]["1"]["items"] == 2
    runs = {r.kind: r for r in store.runs_of(exp_id)}
    assert runs["gsm8k-ft-nca"].status == "completed" and (store.run_dir(runs["gsm8k-ft-nca"]) / "model" / "config.json").exists()
    assert store.curve(runs["gsm8k-ft-nca"].id, "train_loss")[0]
    plot = _json(capsys, "runs", "plot", exp_id, "--metric", "pass@k", "--home", str(home))
    assert {c["label"].split("/")[1] for c in plot["curves"]} >= {"humaneval-nca", "humaneval-scratch"}
    assert all(c["x"] == sorted(c["x"]) for c in plot["curves"])
    shown = _json(capsys, "runs", "show", exp_id, "--home", str(home))
    assert set(shown["summary"]["downstream"]) == {"humaneval", "gsm8k"}


def test_an_interrupted_evaluation_resumes_without_sampling_finished_items(trained):
    from ncalab.experiment import pipeline
    from ncalab.services.evaluation import add_evaluation

    home, exp_id = trained
    store = RunStore(home)
    exp, cfg = add_evaluation(store, exp_id, ["bbl"], [f"eval.bbl.data={BBL}", "eval.bbl.limit=1", "eval.bbl.samples=2",
                                                        "eval.bbl.k=1,2", "eval.bbl.epochs=0.01"])
    import os
    import socket

    n = len(bbl.load(BBL))  # one validation item per subtask (limit 1)

    def stop_after_some():
        # past the fine-tuning, into the sampling of the first arm: stop once it has scored a few items
        arm = next((r for r in store.runs_of(exp.id) if r.kind == "bbl-nca"), None)
        return arm is not None and len(store.eval_items(arm.id)) >= 3

    assert store.claim_experiment(exp.id, os.getpid(), socket.gethostname())
    assert pipeline.run(cfg, store, exp.id, should_stop=stop_after_some) is None
    assert store.get_experiment(exp.id).status == "cancelled"
    runs = {r.kind: r for r in store.runs_of(exp.id)}
    first = store.eval_items(runs["bbl-nca"].id)
    assert 0 < len(first) < n and runs["bbl-nca"].status == "cancelled"
    store.requeue_experiment(exp.id)
    assert store.claim_experiment(exp.id, os.getpid(), socket.gethostname())
    seen = Recorder()
    summary = pipeline.run(cfg, store, exp.id, seen)
    after = store.eval_items(runs["bbl-nca"].id)
    assert len(after) == n and [i.item for i in after[: len(first)]] == [i.item for i in first]
    # progress counts items, and the samples scored before the interruption too
    assert seen.stages["bbl-nca"] == (n, "items")
    nca = [(done, m) for name, done, m in seen.updates if name == "bbl-nca"]
    assert nca[0][0] == len(first) + 1 and nca[0][1]["samples"] == 2 * (len(first) + 1)
    assert nca[-1] == (n, {"samples": 2 * n, "correct": sum(i.correct for i in after)})
    lines = (store.run_dir(runs["bbl-nca"]) / "samples.jsonl").read_text().splitlines()
    sampled = [json.loads(x)["item"] for x in lines]
    assert len(sampled) == len(set(sampled)) == n  # nothing sampled twice
    assert 0.0 <= summary.downstream["bbl"]["2"]["nca"] <= 1.0


class Recorder(SilentReporter):
    """What a front end is told: stages with their totals and units, then progress."""

    def __init__(self):
        self.stages, self.updates = {}, []

    def stage(self, name, total, unit="tokens"):
        self.stages[name] = (total, unit)

    def progress(self, name, done, metrics):
        self.updates.append((name, done, dict(metrics)))


def test_the_job_log_counts_an_evaluation_in_items_and_correct_samples(capsys):
    from ncalab.cli.job import LogReporter

    log = LogReporter(every_s=0)
    log.stage("humaneval-nca", 20, unit="items")
    log.progress("humaneval-nca", 3, {"correct": 1, "samples": 24})
    out = capsys.readouterr().out
    assert "[humaneval-nca] started: 20 items" in out and "3/20 items  1 of 24 samples correct" in out
    assert "loss" not in out and "tok/s" not in out


def test_an_experiment_without_language_models_cannot_be_evaluated(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    assert main(["run", "--corpus", str(code_corpus), "--home", str(home), "--detach", "--json", *MICRO]) == 0
    exp_id = json.loads(capsys.readouterr().out)["experiment_id"]
    main(["runs", "cancel", exp_id, "--home", str(home)])
    capsys.readouterr()
    code = main(["eval", exp_id, "--home", str(home), "--task", "gsm8k", "--data", str(GSM8K)])
    assert code != 0 and "no finished language models" in capsys.readouterr().err
