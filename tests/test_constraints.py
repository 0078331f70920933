"""Lexical constraints (task.constraints): the rules worked out from x, the logits processor's
banned sets on a byte-level tokenizer the test trains and on the real SmolLM2 tokenizer,
generation with a tiny random model (banned words never appear, samples independent of the
batch), cache keys, the config block and the backends that refuse it."""

from __future__ import annotations

import pytest

from distill.generator.cache import RequestCache, cache_key
from distill.errors import ConfigError, DistillError
from distill.generator.backends.base import Request, SamplingParams
from distill.generator.constraints import constraint_for, violations, words_of
from distill.generator.teacher import Teacher
from fake_backend import FakeBackend

PAK = "Yesterday, Pakistan announced it had arrested Lashkar-e-Taiba chief Hafiz Mohammed Saeed."
CORPUS = ["Police said 35 people were hurt in Pakistan on Tuesday.", "The Conservative Party won 12 seats today.",
          "Christmas Island lies in the Indian Ocean, eight hours away.", "Fire crews fought the blaze for 3 days.",
          "Mr Howard met Hafiz Mohammed Saeed in Sydney last summer.", "Zebras and Quokkas roam the plains."] * 3


def names_only(x: str):
    return constraint_for(x, ban_new_names=True)


def test_rules_from_x():
    c = constraint_for("Eight militants died in 2003 on Tuesday.", True, True, True)
    assert violations("8 militants died in 2003 on Tuesday.", c) == []  # x's "eight" allows "8"
    assert violations("Seven militants died in 2004 on Monday, police said.", c) == ["Seven", "2004", "Monday"]
    assert violations("One man died this week.", c) == ["week"]  # "one" is never banned; "week" is a time word
    assert violations("They died today, The Times said.", c) == ["today", "Times"]
    assert violations("It may rain in May.", constraint_for("Rain is due.", ban_new_times=True)) == ["May"]
    assert violations("Pakistan's chief", names_only(PAK)) == []
    assert violations("Pakistani PaKistan PAKISTAN FBI", names_only(PAK)) == ["PaKistan", "FBI"]  # a demonym is kept
    assert violations("Kashmir, FBI, McDonald", names_only("Kashmiri FBI officers met McDonald.")) == []
    assert words_of("Lashkar-e-Taiba, 1,000") == ["Lashkar", "e", "Taiba", "1", "000"]
    assert constraint_for(PAK) is None  # every option off
    assert constraint_for(PAK, boost_kept_names=1.0).boost == ("Pakistan", "Lashkar", "Taiba", "Hafiz", "Mohammed", "Saeed")


# --- the processor on a byte-level BPE the test trains ------------------------------------

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A byte-level BPE tokenizer (every byte is a token) and a random 2-layer Llama over it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=420, special_tokens=["<eos>", "<pad>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    out = tmp_path_factory.mktemp("tiny-bpe-llama")
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from distill.generator.backends.transformers_backend import TransformersBackend

    b = TransformersBackend(model=str(tiny_dir), device="cpu", batch_size=8)
    yield b
    b.close()


def banned_after(lex, c, text: str):
    """The tokens banned once y is ``text``, fed to the processor one character per token."""
    import torch

    from distill.generator.backends.lexical import LexicalProcessor

    ids = [lex.tok.convert_tokens_to_ids(t) for ch in text for t in lex.tok.tokenize(ch)]
    proc = LexicalProcessor(lex, [c], prompt_width=2)
    scores = proc(torch.tensor([[0, 0] + ids]), torch.zeros(1, lex.size))
    return lambda s: [bool(torch.isinf(scores[0, lex.tok.convert_tokens_to_ids(t)])) for t in lex.tok.tokenize(s)]


def test_names_spelled_token_by_token(tiny):
    lex, c = tiny.lexicon(), names_only(PAK)
    b = banned_after(lex, c, "Then Pak")
    assert b("i") == [False] and b("x") == [True]  # "Paki" is a prefix of pakistan, "Pakx" of nothing
    assert b(" ") == [True] and b(",") == [True]  # "Pak" may not end short of "Pakistan"
    assert banned_after(lex, c, "Then Pak")("<eos>") == [True]
    b = banned_after(lex, c, "Then Pakistan")
    assert b(",") == [False] and b(" ") == [False] and b("'") == [False]
    b = banned_after(lex, c, "Then ")
    assert b("Z") == [True] and b("H") == [False] and b("z") == [False]  # no word of x or function word starts with z
    assert banned_after(lex, c, "Then Lashkar-e-")("T") == [False]
    b = banned_after(lex, c, "Then Pa")
    assert b("k") == [False] and b("K") == [True]  # no capital inside a word x spells without one
    assert banned_after(lex, c, "Then Pakistan")("i") == [False] and banned_after(lex, c, "Then Pakistani")(" ") == [False]
    c = names_only("Kashmiri FBI officers met.")
    assert banned_after(lex, c, "in Kashmir")(" ") == [False]  # x's demonym allows the place
    assert banned_after(lex, c, "the F")("B") == [False] and banned_after(lex, c, "the FB")("i") == [True]


def test_numbers_and_times_token_by_token(tiny):
    lex = tiny.lexicon()
    c = constraint_for("Police said 35 people were hurt.", ban_new_numbers=True, ban_new_times=True)
    assert banned_after(lex, c, "About ")("3") == [False] and banned_after(lex, c, "About ")("4") == [True]
    b = banned_after(lex, c, "About 3")
    assert b("5") == [False] and b(" ") == [True] and b(",") == [True]  # "3" is not x's number
    assert banned_after(lex, c, "About 35")("7") == [True] and banned_after(lex, c, "About 35")(" ") == [False]
    assert banned_after(lex, c, "hurt toda")("y") == [True]  # "today" is a time word x lacks
    assert banned_after(lex, c, "hurt toda")("s") == [False]
    assert banned_after(lex, c, "hurt ")("T") == [False]  # names are not checked here


def gen(backend, reqs):
    return [[co.text for co in r.completions] for r in backend.generate_requests(reqs)]


def strip_cut(text: str) -> str:
    """A sample cut by max_tokens may end inside a word that was still allowed as a prefix."""
    return text if not text or not text[-1].isalnum() else text.rsplit(" ", 1)[0]


def test_tiny_model_never_writes_a_banned_word(tiny):
    x = "Police said 35 people were hurt in Pakistan."
    c = constraint_for(x, True, True, True)
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=3)
    free = gen(tiny, [Request(x, params, tuple(range(8)))])[0]
    assert sum(bool(violations(strip_cut(y), c)) for y in free) >= 4  # the random model writes names freely
    held = gen(tiny, [Request(x, params, tuple(range(8)), constraints=c)])[0]
    assert all(violations(strip_cut(y), c) == [] for y in held), held
    assert held != free


def test_constrained_samples_do_not_depend_on_the_batch(tiny):
    xs = ["Police said 35 people were hurt in Pakistan.", "Fire crews fought the blaze for 3 days."]
    params = SamplingParams(max_tokens=16, temperature=0.9, seed=1)
    reqs = [Request(x, params, (0, 1, 2), constraints=constraint_for(x, True, True, boost_kept_names=1.5)) for x in xs]
    together = gen(tiny, reqs + [Request("The Conservative Party won", params, (0, 1))])
    tiny.batch_size = 1
    try:
        alone = gen(tiny, [Request(xs[1], params, (2,), constraints=reqs[1].constraints)])
    finally:
        tiny.batch_size = 8
    assert alone[0][0] == together[1][2]
    assert gen(tiny, reqs[:1]) == together[:1]


def test_cache_keys_and_the_teacher(tiny, tmp_path):
    p, params = "Police said 35 people", SamplingParams(max_tokens=8, temperature=1.0)
    a, b = names_only(PAK), constraint_for(PAK, True, True)
    keys = {cache_key("m", p, params, 0), cache_key("m", p, params, 0, a), cache_key("m", p, params, 0, b)}
    assert len(keys) == 3 and cache_key("m", p, params, 0, a) == cache_key("m", p, params, 0, names_only(PAK))
    cache = RequestCache(tmp_path / "c.sqlite")
    t = Teacher(tiny, cache)
    t.generate([p], 2, params)
    t.generate([p], 2, params, [a])
    assert len(cache) == 4 and t.cached_samples == 0
    t.generate([p], 2, params, [a])
    assert t.cached_samples == 2
    with pytest.raises(ConfigError, match="task.constraints: the fake backend cannot apply"):
        Teacher(FakeBackend()).generate([p], 1, params, [a])
    Teacher(FakeBackend()).generate([p], 1, params, [None])  # free requests pass
    cache.close()


def test_config_block_and_refusing_backends(tmp_path):
    from distill.config import load_config
    from distill.generator.backends.openai_backend import OpenAIBackend
    from distill.generator.backends.vllm_backend import VLLMBackend
    from distill.generator.tasks import build_task

    base = ["task.name=paraphrase_instruct", "task.inputs=builtin:lee-train"]
    assert "constraints" not in load_config(None, base).model_dump()["task"]  # off: old fingerprints hold
    cfg = load_config(None, base + ["task.constraints.ban_new_names=true"])
    assert cfg.model_dump()["task"]["constraints"]["ban_new_names"] is True
    with pytest.raises(ConfigError, match="task.constraints.ban_names: unknown key"):
        load_config(None, base + ["task.constraints.ban_names=true"])
    task = build_task(cfg.task, 0)
    assert task.constraint(PAK) == names_only(PAK)
    with pytest.raises(ConfigError, match="task.constraints"):
        task.resolve_defaults(FakeBackend())
    assert not VLLMBackend.supports_constraints and not OpenAIBackend.supports_constraints
    from distill.loop import round_config

    assert round_config(cfg, 2, str(tmp_path)).task.constraints == cfg.task.constraints  # later rounds keep them
    assert round_config(load_config(None, base), 2, str(tmp_path)).task.constraints is None


# --- the real SmolLM2 ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def smol_tok():
    from transformers import AutoTokenizer

    from distill.generator.models import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(None))
    except DistillError as e:
        pytest.skip(str(e))


def test_smollm2_vocabulary(smol_tok):
    from distill.generator.backends.lexical import Lexicon

    lex = Lexicon(smol_tok)
    m = lex.rules(constraint_for(PAK, True, True, True)).mask(None)
    first = {s: bool(m[smol_tok(s, add_special_tokens=False)["input_ids"][0]]) for s in
             (" Christmas", " Police", " Tuesday", " eight", " today", " Pakistan", " The", "Y", " police", " arrested")}
    assert first == {" Christmas": True, " Police": True, " Tuesday": True, " eight": True, " today": True,
                     " Pakistan": False, " The": False, "Y": False, " police": False, " arrested": False}


@pytest.mark.slow
def test_smollm2_constrained_few_shot_paraphrase_adds_no_name():
    from distill.config import ParaphraseInstructTask
    from distill.generator.backends.transformers_backend import TransformersBackend
    from distill.generator.tasks.paraphrase import ParaphraseInstruct

    cfg = ParaphraseInstructTask(inputs="-", k=8, few_shot=[
        ("The city council approved the new budget after a three-hour debate on Tuesday night.",
         "On Tuesday night, after debating for three hours, the city council passed the new budget."),
        ("Police are still searching for two men who escaped from the prison early on Sunday.",
         "Two men who broke out of the prison in the early hours of Sunday have still not been found by police.")],
        constraints={"ban_new_names": True})
    task = ParaphraseInstruct(cfg, 0)
    try:
        b = TransformersBackend(batch_size=8)
    except DistillError as e:
        pytest.skip(str(e))
    with b:
        params = SamplingParams(max_tokens=48, temperature=0.8, top_p=0.95)
        [comps] = b.generate([task.messages(PAK)], 8, params, [task.constraint(PAK)])
    ys = [strip_cut(co.text) if co.finish_reason == "length" else co.text for co in comps]
    assert all(y.strip() for y in ys)
    assert [violations(y, names_only(PAK)) for y in ys] == [[]] * 8, ys
