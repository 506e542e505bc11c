"""Downstream evaluation: pass@k, HumanEval execution, GSM8K answers and fine-tuning masks,
BIG-bench Lite scoring and split, and `ncalab eval --task` end to end on real models and data."""

import json
import math
import random
from pathlib import Path

import pytest

from conftest import BBL, GSM8K, MICRO, WIKITEXT, cli_json
from ncalab.cli.main import main
from ncalab.errors import NcalabError
from ncalab.evaluation import bbl, gsm8k, humaneval
from ncalab.evaluation.passk import pass_at_k
from ncalab.reporting import SilentReporter
from ncalab.nca.tokens import IGNORE_INDEX
from ncalab.store import RunStore
from ncalab.train.batches import pack_examples, pack_groups



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
    """The inner layer alone (isolation none): the audit hook and the limits."""
    p = humaneval.load_problems()[0]
    loop = humaneval.check(p, "    while True:\n        pass\n", timeout=1.0, isolation="none")
    assert not loop.passed and loop.status == "timeout"
    outside = tmp_path / "escaped.txt"
    escape = humaneval.check(p, f"    open({str(outside)!r}, 'w').write('x')\n    return True\n", isolation="none")
    assert not escape.passed and "outside the sandbox" in escape.detail and not outside.exists()
    assert not humaneval.check(p, "    import os\n    os.system('true')\n    return True\n", isolation="none").passed


def test_gsm8k_answers_are_extracted_and_checked_numerically():
    """The gsm8k format (eval.gsm8k.format=gsm8k): the number after the first ####."""
    assert gsm8k.is_correct("She pays 3 * 5 = 15 dollars.\n#### 15", "15", "gsm8k")
    assert gsm8k.is_correct("Total is 1,234 apples\n#### 1,234\n\nQuestion: ...", "1234", "gsm8k")
    assert gsm8k.is_correct("#### $18 dollars", "18", "gsm8k")
    assert gsm8k.is_correct("so the answer is 0.5", "0.5", "gsm8k")  # no ####: the last number
    assert not gsm8k.is_correct("#### 16", "15", "gsm8k")
    assert not gsm8k.is_correct("I do not know", "3", "gsm8k")
    assert not gsm8k.is_correct("#### 15\n\nQuestion: how many?\nAnswer:\n#### 99", "99", "gsm8k")  # the first #### counts
    train, test = gsm8k.load(GSM8K)
    problems = sum(1 for line in GSM8K.read_text(encoding="utf-8").splitlines() if line.strip())
    assert len(train) + len(test) == problems and 0.07 < len(test) / problems < 0.13
    assert {p.question for p in train}.isdisjoint({p.question for p in test})
    assert all(gsm8k.is_correct("".join(gsm8k.example_text(p, "gsm8k")[1:]), p.answer, "gsm8k") for p in test[:50])
    p = train[0]
    assert gsm8k.example_text(p, "gsm8k") == (f"Question:\n{p.question}\nAnswer:\n", f"{p.solution}\n#### {p.answer}\n\n")
    assert gsm8k.stops("x = 3\n#### 3\n", "gsm8k") and gsm8k.stops("x\nQuestion:", "gsm8k")


def _first_record():
    return gsm8k.parse_record(0, json.loads(GSM8K.read_text(encoding="utf-8").splitlines()[0]))


def test_gsm8k_paper_format_writes_a_record_as_the_papers_code():
    """Question:\\n{q}\\nAnswer:\\n{solution}\\nFinal Answer: N, the end token after each worked
    example, and a prompt that ends after the question's line (the model writes "Answer:")."""
    p = _first_record()
    question, answer = gsm8k.example_text(p)  # the paper's format is the default
    assert question == ("Question:\nNatalia sold clips to 48 of her friends in April, and then she sold half as many "
                        "clips in May. How many clips did Natalia sell altogether in April and May?\n")
    assert answer == ("Answer:\nNatalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 "
                      "clips altogether in April and May.\nFinal Answer: 72")
    assert "####" not in question + answer
    shots = gsm8k.load(GSM8K)[1][:2]
    text = gsm8k.prompt(p, shots, "paper", end="<E>")
    assert text == "".join(q + a + "<E>" for q, a in (gsm8k.example_text(s) for s in shots)) + question
    assert text.count("<E>") == 2 and text.endswith("May?\n")


def test_gsm8k_paper_answers_are_the_last_word_before_the_end_token():
    """The paper reads the last space-separated word of the completion (after a #### if any),
    and math-verify decides whether it equals the reference."""
    p = _first_record()
    assert gsm8k.extract(gsm8k.example_text(p)[1]) == "72"
    assert gsm8k.is_correct(gsm8k.example_text(p)[1], "72")
    assert gsm8k.is_correct("Answer:\nShe has 1,200 + 34.\nFinal Answer: 1,234", "1234")
    assert gsm8k.is_correct("Answer:\n3 * 6 = 18\nFinal Answer: $18", "18")
    assert gsm8k.is_correct("Answer:\n3 * 6 = 18\nFinal Answer: 18<|endoftext|>Question:\nAnswer: 5", "18")
    assert gsm8k.is_correct("Answer:\n#### 15", "15") and gsm8k.extract("Final Answer: 15 \n") == "15"
    assert not gsm8k.is_correct("Answer:\nFinal Answer: 72 clips", "72")  # the last word is read, as in the paper
    assert not gsm8k.is_correct("Answer:\nFinal Answer: 16", "15") and not gsm8k.is_correct("", "15")
    assert not gsm8k.stops("Final Answer: 72\nQuestion:\n")  # only the end token (or the limit) ends a sample
    _, test = gsm8k.load(GSM8K)
    assert all(gsm8k.is_correct(gsm8k.example_text(q)[1], q.answer) for q in test)


@pytest.mark.parametrize("shots_from", ["test", "train"])
def test_no_gsm8k_item_is_its_own_worked_example(shots_from):
    from ncalab.config import ExperimentConfig
    from ncalab.evaluation.tasks import TASKS, item_seed

    cfg = ExperimentConfig()
    cfg.eval.gsm8k.data, cfg.eval.gsm8k.shots_from = str(GSM8K), shots_from
    train, test = gsm8k.load(GSM8K)
    items = TASKS["gsm8k"].items(cfg, end="<E>")
    assert [it.item_id for it in items] == [p.task_id for p in test]
    pool = {p.question for p in (test if shots_from == "test" else train)}
    for it, p in zip(items, test):
        parts = it.prompt.split("<E>")
        assert len(parts) == 4 and parts[-1] == f"Question:\n{p.question}\n"  # 3 shots, then the question
        shot_questions = [s.split("\nAnswer:\n")[0].removeprefix("Question:\n") for s in parts[:-1]]
        assert p.question not in shot_questions and set(shot_questions) <= pool
        assert len(set(shot_questions)) == 3
    # a second record of the same question is never a shot either, even when it is all there is
    twin = gsm8k.Problem("gsm8k/copy", test[0].question, "x", "1")
    assert gsm8k.pick_shots(test[0], [twin, test[0]], 3, random.Random(0)) == []
    if shots_from == "train":  # the gsm8k option keeps the shots ncalab drew before
        p = test[0]
        assert gsm8k.pick_shots(p, train, 3, random.Random(item_seed(cfg.seed, p.task_id))) == \
            random.Random(item_seed(cfg.seed, p.task_id)).sample(train, 3)


def test_paper_fine_tuning_sequences_hold_six_examples_the_last_their_own():
    """pack = 6: one sequence per training example, 5 others drawn at random before it, the loss
    on every example's answer and end token; an epoch has as many sequences as examples."""
    from ncalab.config import ExperimentConfig
    from ncalab.data.tokenizer import train_bpe
    from ncalab.evaluation.tasks import TASKS
    from ncalab.evaluation.stages import example_groups, fine_tune_rows

    cfg = ExperimentConfig()
    cfg.eval.gsm8k.data = str(GSM8K)
    train, _ = gsm8k.load(GSM8K)
    pairs = TASKS["gsm8k"].examples(cfg)
    assert pairs == [gsm8k.example_text(p, "paper") for p in train]
    tok = train_bpe([q + a for q, a in pairs], 1024)
    eos = tok.eos_token_id
    inputs, targets, cut = fine_tune_rows(pairs, tok, 4096, cfg.eval.gsm8k.pack, seed=0)
    assert cfg.eval.gsm8k.pack == 6 and inputs.shape == (len(train), 4096) and cut == 0
    groups = example_groups([q for q, _ in pairs], 6, seed=0)
    for i in range(0, len(train), 37):
        assert groups[i][-1] == i and i not in groups[i][:-1] and len(set(groups[i])) == 6
        kept = [int(t) for t in targets[i] if t != IGNORE_INDEX]
        assert kept.count(eos) == 6  # six examples, each closed by its end token
        answers = tok.decode([t for t in kept if t != eos])
        assert answers == "".join(pairs[j][1] for j in groups[i])  # answers only, no question token
        row = tok.decode(inputs[i]).split(tok.eos_token)
        assert row[5] == "".join(pairs[i])  # the example itself comes last
        assert "".join(pairs[i]) not in row[:5]
    short, _, cut = fine_tune_rows(pairs, tok, 256, 6, seed=0)
    assert short.shape == (len(train), 256) and cut == len(train)  # six examples never fit in 256 tokens
    old, old_targets, _ = fine_tune_rows(pairs, tok, 4096, 0, seed=0)  # pack 0: ncalab's fill, each example once
    assert len(old) < len(train) and int((old_targets == eos).sum()) == len(train)


def test_fine_tuning_steps_are_epochs_times_sequences_over_the_batch():
    from types import SimpleNamespace

    from ncalab.config.sections import GSM8KSection
    from ncalab.evaluation.stages import fine_tune_spec

    sec = GSM8KSection()
    assert (sec.batch_size, sec.pack, sec.epochs, sec.lr) == (512, 6, 10.0, 1e-5)
    # the paper's GSM8K training split: 7,473 sequences, 512 a step (16 x 32), 10 epochs
    spec = fine_tune_spec("gsm8k-ft-nca", sec, 7473, 1024)
    assert spec.tokens_per_step == 512 * 1024 and spec.steps == math.ceil(10 * 7473 / 512) == 146
    assert fine_tune_spec("ft", sec, 542, 128).steps == math.ceil(10 * 542 / 512) == 11
    assert fine_tune_spec("ft", sec, 20, 128).steps == 10  # fewer sequences than a batch: a batch is all of them
    assert fine_tune_spec("ft", sec, 7473, 1024, world=3).tokens_per_step == 510 * 1024
    old = SimpleNamespace(epochs=10.0, batch_size=16, lr=1e-5, warmup=0.1)
    assert fine_tune_spec("ft", old, 2500, 512).steps == math.ceil(10 * 2500 / 16)


def test_gsm8k_settings_are_checked():
    from ncalab.config import ExperimentConfig, apply_overrides, parse_set

    for setting, message in (("eval.gsm8k.format=hash", "eval.gsm8k.format must be one of paper, gsm8k"),
                             ("eval.gsm8k.shots_from=val", "eval.gsm8k.shots_from must be one of test, train"),
                             ("eval.gsm8k.pack=-1", "pack, micro_batch_size and shots >= 0")):
        cfg = ExperimentConfig()
        apply_overrides(cfg, parse_set([setting], cfg))
        with pytest.raises(NcalabError, match=message):
            cfg.validate()
    cfg = ExperimentConfig()
    apply_overrides(cfg, parse_set(["eval.gsm8k.format=gsm8k", "eval.gsm8k.shots_from=train", "eval.gsm8k.pack=0"], cfg))
    cfg.validate()


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
    # one row per group, in the group's order, cut at the row's end
    inputs, targets = pack_groups([examples, examples[2:], examples[:1] * 4], length=10, eos=99, pad=0)
    assert inputs.shape == targets.shape == (3, 10)
    assert list(inputs[0]) == flat[:10] and list(inputs[1]) == [6, 15, 99] + [0] * 7
    assert [int(t) for t in targets[1] if t != IGNORE_INDEX] == [15, 99]
    assert [int(t) for t in targets[0] if t != IGNORE_INDEX] == [10, 11, 99, 12, 13, 14]


def test_bbl_split_is_bigbench_and_scores_follow_the_rules():
    examples = list(range(100))
    train, val = bbl.split(examples)
    order = list(range(100))
    random.Random(42).shuffle(order)
    assert val == order[80:] and train == order[:80]
    assert len(bbl.split(list(range(30)))[1]) == 16  # at least 16 validation examples
    assert len(bbl.split(list(range(323)))[1]) == 64  # 20% rounded down (BIG-bench's 323: 259 + 64)
    assert len(bbl.split(list(range(9)), min_val=16 // 6)[1]) == 2  # six subtasks share the 16
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

    from ncalab.evaluation.tasks import TASKS

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


def _train_sizes(subtasks) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for s in subtasks:
        sizes[s.task] = sizes.get(s.task, 0) + len(s.train)
    return sizes


def test_bbl_scores_the_papers_tasks_that_have_100_training_examples():
    """eval.bbl.tasks = paper: the paper's 18 English tasks less those whose training split (all
    subtasks together) has fewer than 100 examples; notes name the tasks of the list the folder
    lacks and the tasks left out. BIG-bench's split (16 validation examples shared among a task's
    subtasks, 20% rounded down) gives the training sizes of the copy the paper read."""
    every = bbl.load(BBL)
    sizes = _train_sizes(every)
    published = {"auto_debugging": 18, "code_line_description": 44, "conceptual_combinations": 84,
                 "logical_deduction": 1200, "strange_stories": 140}  # Hugging Face bigbench, train split
    assert {t: sizes[t] for t in published if t in sizes} == {t: n for t, n in published.items() if t in sizes}
    kept, notes = bbl.select(BBL)  # the defaults: the paper's list, at least 100
    expected = {t for t, n in sizes.items() if t in bbl.PAPER_TASKS and n >= 100}
    assert expected and {s.task for s in kept} == expected
    assert sorted(s.name for s in kept) == sorted(s.name for s in every if s.task in expected)  # whole tasks
    missing = [t for t in bbl.PAPER_TASKS if t not in sizes]
    if missing:
        assert f"{len(missing)} of the paper's 18 BIG-bench Lite tasks are not in" in notes[0]
        assert notes[0].endswith(", ".join(missing))
    small = sorted(t for t, n in sizes.items() if t in bbl.PAPER_TASKS and n < 100)
    if small:
        assert notes[-1].endswith(", ".join(f"{t} ({sizes[t]})" for t in small))
    # all, with no minimum: every task of the folder, as ncalab scored before
    assert [s.name for s in bbl.select(BBL, ["all"], 0)[0]] == [s.name for s in every]
    named, notes = bbl.select(BBL, ["strange_stories", "no_such_task"], 0)
    assert {s.task for s in named} == {"strange_stories"} and notes == [
        f"1 of the selected 2 BIG-bench Lite tasks are not in {BBL}: no_such_task"]
    with pytest.raises(NcalabError, match="has 100 training examples"):
        bbl.select(BBL, ["auto_debugging"], 100)


def test_bbl_fine_tunes_on_at_most_350_examples_of_each_task():
    from ncalab.config import ExperimentConfig
    from ncalab.evaluation.tasks import TASKS

    cfg = ExperimentConfig()
    cfg.eval.bbl.data = str(BBL)
    kept = bbl.select(BBL)[0]
    sizes = _train_sizes(kept)
    assert cfg.eval.bbl.max_train_per_task == 350 and max(sizes.values()) > 350
    picked = bbl.training_examples(kept, 350)
    assert TASKS["bbl"].examples(cfg) == [(it.prompt, it.answer + it.end) for it in picked]
    counts: dict[str, int] = {}
    for it in picked:
        counts[it.task] = counts.get(it.task, 0) + 1
    assert counts == {t: min(350, n) for t, n in sizes.items()}
    train_ids = {it.task_id for s in kept for it in s.train}
    assert len({it.task_id for it in picked}) == len(picked) and {it.task_id for it in picked} <= train_ids
    big = max(sizes, key=sizes.get)  # drawn from all of a task's subtasks, not its first ones
    assert {it.task_id.rsplit("/", 1)[0] for it in picked if it.task == big} == {s.name for s in kept if s.task == big}
    assert bbl.training_examples(kept, 350) == picked  # seeded
    cfg.eval.bbl.max_train_per_task = 0  # every training example, as ncalab fine-tuned before
    assert len(TASKS["bbl"].examples(cfg)) == sum(sizes.values())


def test_bbl_paper_format_asks_question_then_answer_and_the_bigbench_format_stays():
    subs = {s.name: s for s in bbl.load(BBL, ["strange_stories"])}
    sub = subs["strange_stories/boolean"]
    item, shots = sub.validation[0], sub.train[:2]
    meta = bbl._read(next((BBL / "strange_stories" / "boolean").glob("task.json*")))
    raw = next(ex for ex in meta["examples"] if " ".join(str(ex["input"]).split()) in " ".join(item.prompt.split()))
    prefix = meta.get("example_input_prefix", "\nQ: ")
    question = ("Question:\n" + (prefix.replace("Q:", "") + raw["input"]).strip() + "\n\n"
                + "\n".join(f"choice: {o}" for o in raw["target_scores"]))
    assert item.prompt == question + "\n\nAnswer:\n"  # the task's input prefix (Context: ), no Q:/A: labels
    assert item.options == tuple(raw["target_scores"]) and item.choices == len(raw["target_scores"])
    assert item.answer == max(raw["target_scores"], key=raw["target_scores"].get) and item.end == "\n\n"
    assert sub.prompt(item) == "".join(s.prompt + s.answer + "\n\n" for s in shots) + item.prompt  # 2 shots
    logical = bbl.load(BBL, ["logical_deduction"])[0]
    it = logical.validation[0]
    assert it.prompt.startswith("Question:\nThe following paragraphs each describe")  # the task's instruction
    assert logical.prefix == "" and it.prompt.count("\nchoice: ") == it.choices
    # eval.bbl.format = bigbench: BIG-bench's own prefixes, as ncalab prompted before
    old = {s.name: s for s in bbl.load(BBL, ["strange_stories"], fmt="bigbench")}["strange_stories/boolean"]
    it = old.validation[0]
    assert it.task_id == item.task_id
    assert it.prompt == (prefix + raw["input"].strip() + "".join(f"\n  choice: {o}" for o in raw["target_scores"])
                         + meta.get("example_output_prefix", "\nA: "))
    assert it.end == "" and old.prompt(it) == "".join(s.prompt + s.answer + "\n" for s in old.train[:2]) + it.prompt


class _CharTok:
    """A tokenizer of one token per character (ids 1..31; 0 is the end token)."""

    eos_token_id = 0

    def __call__(self, text, add_special_tokens=False):
        def enc(t):
            return [1 + ord(ch) % 31 for ch in t]

        return {"input_ids": [enc(t) for t in text] if isinstance(text, list) else enc(text)}


def _bigram(table):
    """A model whose next-token logits at each position are the row of `table` of the token there."""
    from types import SimpleNamespace

    import torch

    class Bigram(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.table = torch.nn.Parameter(table.clone())
            self.config = SimpleNamespace(max_position_embeddings=64)
            self.calls = []

        def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=False, logits_to_keep=0):
            self.calls.append(tuple(input_ids.shape))
            logits = self.table[input_ids]
            return SimpleNamespace(logits=logits[:, -logits_to_keep:] if logits_to_keep else logits)

    return Bigram()


def test_logprob_scoring_picks_the_choice_the_model_scores_highest():
    import torch

    from ncalab.evaluation.sampling import choice_logprobs

    tok, prompt, options = _CharTok(), "Question:\nx?\n\nAnswer:\n", ["yes", "no", "maybe not"]
    table = torch.randn(32, 32, generator=torch.Generator().manual_seed(0))

    def by_hand(table, option):
        prev, total = tok(prompt)["input_ids"][-1], 0.0
        for t in tok(option)["input_ids"]:
            total += float(torch.log_softmax(table[prev], -1)[t])
            prev = t
        return total

    model = _bigram(table)
    got = choice_logprobs(model, tok, prompt, options, batch=2)
    assert got == pytest.approx([by_hand(table, o) for o in options], abs=1e-5)
    assert model.calls == [(2, len(prompt) + 3), (1, len(prompt) + 9)]  # batches of rows, one forward pass each
    for favoured in options:  # make each option in turn the likeliest: it is the one picked
        steered = table.clone()
        prev = tok(prompt)["input_ids"][-1]
        for t in tok(favoured)["input_ids"]:
            steered[prev, t] += 40.0
            prev = t
        scores = choice_logprobs(_bigram(steered), tok, prompt, options)
        assert options[max(range(3), key=scores.__getitem__)] == favoured


def test_logprob_scoring_of_a_real_model_matches_its_unpadded_forward_pass():
    """Left padding with its mask and positions changes nothing: each option's log-probability is
    that of the model run on prompt + option alone."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from ncalab.evaluation.sampling import choice_logprobs

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64))
    tok, prompt, options = _CharTok(), "Q: a or b?\nA:", [" a", " b, surely", " neither of them"]
    got = choice_logprobs(model, tok, prompt, options, batch=16)
    ids = tok(prompt)["input_ids"]
    for option, value in zip(options, got):
        o = tok(option)["input_ids"]
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids + o])).logits[0].float(), -1)
        assert value == pytest.approx(sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(o)), abs=1e-4)


def _guesser_rows(choices: int, items: int = 4000, samples: int = 8, seed: int = 0):
    """Stored rows of a uniform random guesser: each sample names one of the choices at random."""
    from types import SimpleNamespace

    import numpy as np

    picks = np.random.default_rng(seed).integers(0, choices, size=(items, samples))
    return [SimpleNamespace(item=f"t/s/{i}", subtask="t/s", choices=choices, samples=samples,
                            correct=int((row == 0).sum())) for i, row in enumerate(picks)]


@pytest.mark.parametrize("choices", [2, 4])
def test_a_random_guesser_scores_zero_above_chance_at_every_k(choices):
    """pass@k counts an item passed when any of k independent samples is right: a guesser passes
    with probability 1 - (1 - 1/C)^k, so its normalised score is about 0 at pass@1 and pass@2.
    The paper's 1/C at every k leaves it at (1 - (1 - 1/C)^2 - 1/C) / (1 - 1/C) at pass@2:
    0.5 on two choices."""
    from ncalab.config import ExperimentConfig
    from ncalab.evaluation.tasks import TASKS
    from ncalab.evaluation.passk import per_item_pass

    rows, task, cfg = _guesser_rows(choices), TASKS["bbl"], ExperimentConfig()
    assert cfg.eval.bbl.chance == "correct"
    for k in (1, 2):
        assert 0.0 <= task.score(per_item_pass(rows, k), rows, k=k, cfg=cfg) < 0.03
    cfg.eval.bbl.chance = "paper"
    assert task.score(per_item_pass(rows, 1), rows, k=1, cfg=cfg) < 0.03
    paper = task.score(per_item_pass(rows, 2), rows, k=2, cfg=cfg)
    c = 1 / choices
    assert paper == pytest.approx((1 - (1 - c) ** 2 - c) / (1 - c), abs=0.03)
    if choices == 2:
        assert paper == pytest.approx(0.5, abs=0.03)
    # a model that always answers right scores 1 either way
    right = [type(r)(**{**vars(r), "correct": r.samples}) for r in rows]
    assert task.score(per_item_pass(right, 2), right, k=2, cfg=cfg) == 1.0
    assert bbl.chance([2, 4], k=2).tolist() == pytest.approx([0.75, 1 - 0.75 ** 2])


def test_bbl_items_with_no_answer_are_left_out_unless_the_papers_rule_counts_them():
    """The paper's code keeps items that got no response (n = 0), and its pass@k of n - c < k is
    1, so they score as passed, in one more task of the macro average. ncalab leaves them out;
    eval.bbl.unanswered = paper counts them that way."""
    from types import SimpleNamespace

    from ncalab.config import ExperimentConfig
    from ncalab.evaluation.tasks import TASKS
    from ncalab.evaluation.passk import per_item_pass

    rows = [SimpleNamespace(item=f"a/{i}", subtask="a", choices=2, samples=1, correct=i % 2) for i in range(10)]
    rows += [SimpleNamespace(item=f"g/{i}", subtask="g", choices=0, samples=0, correct=0) for i in range(5)]
    per = per_item_pass(rows, 1)
    assert set(per) == {f"a/{i}" for i in range(10)}
    cfg, task = ExperimentConfig(), TASKS["bbl"]
    assert cfg.eval.bbl.unanswered == "exclude" and task.score(per, rows, k=1, cfg=cfg) == 0.0
    cfg.eval.bbl.unanswered = "paper"
    assert task.score(per, rows, k=1, cfg=cfg) == 0.5
    diff, _ = task.difference(per, {i: 1.0 for i in per}, rows, resamples=50, k=1, cfg=cfg)
    assert diff == pytest.approx(-0.5)  # the passing task dilutes the difference as it does the score


@pytest.mark.parametrize("setting, message", [
    ("eval.bbl.format=markdown", "eval.bbl.format must be one of paper, bigbench, got 'markdown'"),
    ("eval.bbl.mode=greedy", "eval.bbl.mode must be one of sample, logprob, got 'greedy'"),
    ("eval.bbl.chance=none", "eval.bbl.chance must be one of correct, paper, got 'none'"),
    ("eval.bbl.unanswered=pass", "eval.bbl.unanswered must be one of exclude, paper, got 'pass'"),
    ("eval.bbl.tasks=paper,strange_stories", "not a mix"),
    ("eval.bbl.min_train=-1", "eval.bbl.min_train and max_train_per_task must be >= 0"),
    ("eval.bbl.max_train_per_task=-5", "eval.bbl.min_train and max_train_per_task must be >= 0"),
])
def test_bbl_settings_are_checked(setting, message):
    from ncalab.config import ExperimentConfig, apply_overrides, parse_set

    cfg = ExperimentConfig()
    apply_overrides(cfg, parse_set([setting], cfg))
    with pytest.raises(NcalabError, match=message) as e:
        cfg.validate()
    assert "\n" not in str(e.value)
    cfg = ExperimentConfig()
    apply_overrides(cfg, parse_set(["eval.tasks=bbl", "eval.bbl.mode=logprob", "eval.bbl.samples=1",
                                    "eval.bbl.tasks=logical_deduction,strange_stories", "eval.bbl.format=bigbench",
                                    "eval.bbl.chance=paper", "eval.bbl.unanswered=paper"], cfg))
    cfg.validate()  # logprob needs one answer per item, whatever eval.bbl.k says
    assert cfg.eval.bbl.tasks == ["logical_deduction", "strange_stories"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    home = tmp_path_factory.mktemp("eval") / "h"
    assert main(["run", "--corpus", str(WIKITEXT), "--home", str(home), "--json", *MICRO,
                 "--set", "stage2.seq_len=128"]) == 0
    return home, RunStore(home).list_experiments()[0].id


def _json(capsys, *args, stderr=""):
    # nothing but ncalab's own words on stderr: no third-party progress bars or warnings
    return cli_json(capsys, *args, stderr=stderr)


# before the other tests evaluate the shared experiment (they store data paths in its config)
@pytest.mark.parametrize("args, message", [
    (["--task", "poetry"], "unknown evaluation task"),
    (["--task", "humaneval", "--samples", "2", "--k", "4", "--allow-code-execution"], "needs at least 4 samples"),
    (["--task", "gsm8k", "--data", "/no/such/file.jsonl"], "does not exist"),
    (["--task", "gsm8k"], "needs its data"),
    (["--task", "humaneval"], "--allow-code-execution"),
    (["--task", "bbl", "--data", str(BBL), "--set", "eval.bbl.mode=greedy"], "eval.bbl.mode must be one of sample"),
    (["--task", "bbl", "--data", str(BBL), "--set", "eval.bbl.tasks=repeat_copy_logic"], "has 100 training examples"),
])
def test_bad_evaluations_are_one_line_errors_and_store_nothing(trained, capsys, args, message):
    home, exp_id = trained
    store = RunStore(home)
    before = (store.get_experiment(exp_id).config_json, [r.id for r in store.runs_of(exp_id)])
    code = main(["eval", exp_id, "--home", str(home), *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert (store.get_experiment(exp_id).config_json, [r.id for r in store.runs_of(exp_id)]) == before


def test_require_isolation_where_there_is_none_refuses_and_stores_nothing(trained, capsys, monkeypatch):
    from ncalab.evaluation import isolation, sandbox

    monkeypatch.setattr(sandbox, "available", lambda: isolation.NONE)  # a machine without user namespaces
    home, exp_id = trained
    store = RunStore(home)
    before = (store.get_experiment(exp_id).config_json, [r.id for r in store.runs_of(exp_id)])
    code = main(["eval", exp_id, "--home", str(home), "--task", "humaneval", "--allow-code-execution",
                 "--require-isolation", "--samples", "1", "--k", "1", "--limit", "1"])
    err = capsys.readouterr().err
    assert code != 0 and "--require-isolation" in err and len(err.strip().splitlines()) == 1, err
    assert (store.get_experiment(exp_id).config_json, [r.id for r in store.runs_of(exp_id)]) == before


def test_eval_tasks_end_to_end_with_limits(trained, capsys):
    home, exp_id = trained
    from ncalab.evaluation.isolation import DESCRIPTIONS
    from ncalab.evaluation.sandbox import available

    way = available()  # said before it starts (a warning where there is no isolation), stored with every item
    said = ("" if way != "none" else "warning: ") + f"running model-written code; each program under {DESCRIPTIONS[way]}"
    res = _json(capsys, "eval", exp_id, "--home", str(home), "--task", "humaneval", "--limit", "3", "--samples", "4",
                "--k", "1,2", "--allow-code-execution", stderr=said)
    he = res["downstream"]["humaneval"]
    assert set(he) == {"1", "2"} and he["1"]["items"] == 3 and 0 <= he["1"]["nca"] <= he["2"]["nca"] <= 1
    assert he["1"]["sandbox"] == way
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

    n = len(bbl.select(BBL)[0])  # one validation item per subtask (limit 1) of the paper's tasks

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
    missing = [t for t in bbl.PAPER_TASKS if t not in bbl_tasks(BBL)]
    if missing:  # the user is told which of the paper's tasks the folder lacks
        assert any(f"bbl-nca: {len(missing)} of the paper's 18 BIG-bench Lite tasks are not in" in x for x in seen.notes)


def test_bbl_logprob_mode_answers_each_choice_item_with_the_choice_scored_highest(trained):
    """eval.bbl.mode = logprob end to end: one answer per choice item (the choice of highest
    log-probability, all of them stored), generative items stored unanswered and left out,
    pass@1 only."""
    import os
    import socket

    import numpy as np

    from ncalab.experiment import pipeline
    from ncalab.services.evaluation import add_evaluation

    home, exp_id = trained
    store = RunStore(home)
    exp, cfg = add_evaluation(store, exp_id, ["bbl"], [f"eval.bbl.data={BBL}", "eval.bbl.limit=1", "eval.bbl.epochs=0.01",
                                                        "eval.bbl.mode=logprob", "eval.bbl.tasks=all",
                                                        "eval.bbl.min_train=0"])
    assert store.claim_experiment(exp.id, os.getpid(), socket.gethostname())
    seen = Recorder()
    summary = pipeline.run(cfg, store, exp.id, seen)
    run = {r.kind: r for r in store.runs_of(exp.id)}["bbl-nca"]
    rows = {r.item: r for r in store.eval_items(run.id)}
    lines = [json.loads(x) for x in (store.run_dir(run) / "samples.jsonl").read_text().splitlines()]
    answered = {x["item"]: x for x in lines}
    subtasks = bbl.select(BBL, ["all"], 0)[0]
    assert len(rows) == len(answered) == len(lines) == len(subtasks)
    for s in subtasks:
        it = s.validation[0]
        row, line = rows[it.task_id], answered[it.task_id]
        if it.options:
            assert row.samples == 1 and len(line["logprobs"]) == len(it.options)
            assert line["samples"] == [it.options[int(np.argmax(line["logprobs"]))]]
            assert row.correct == int(line["samples"][0] in it.targets)
        else:
            assert row.samples == 0 and line["samples"] == [] and row.correct == 0
    assert set(summary.downstream["bbl"]) == {"1"}  # one answer per item: pass@1
    free = sorted({s.task for s in subtasks if not s.validation[0].options})
    assert any(f"the generative items of {', '.join(free)} are left out" in x for x in seen.notes)


class Recorder(SilentReporter):
    """What a front end is told: stages with their totals and units, notes, then progress."""

    def __init__(self):
        self.stages, self.updates, self.notes = {}, [], []

    def note(self, text):
        self.notes.append(text)

    def stage(self, name, total, unit="tokens"):
        self.stages[name] = (total, unit)

    def progress(self, event):
        from ncalab.reporting import EvaluationProgress

        scored = isinstance(event, EvaluationProgress)
        m = {"samples": event.samples, "correct": event.correct} if scored else {"train_loss": event.train_loss}
        self.updates.append((event.stage, event.done, m))


def test_the_job_log_counts_an_evaluation_in_items_and_correct_samples(capsys):
    from ncalab.services.worker import LogReporter
    from ncalab.reporting import EvaluationProgress

    log = LogReporter(every_s=0)
    log.stage("humaneval-nca", 20, unit="items")
    log.progress(EvaluationProgress("humaneval-nca", 3, samples=24, correct=1))
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
