import pytest

from nanoreason.config import ConfigError
from nanoreason.tasks import make_problems
from nanoreason.tokenizer import EOT, Tokenizer, train_bpe


@pytest.fixture(scope="module")
def tok():
    text = "\n".join(p.question + "\n" + p.solution for p in make_problems(500, "train", seed=0))
    return Tokenizer.train(text, vocab_size=400)


def test_digits_are_single_tokens_and_words_merge(tok):
    ids = tok.encode("How many pens has 1234 people?\n12+5=<<12+5=17>>17")
    pieces = [tok.decode([i]) for i in ids]
    assert [p for p in pieces if any(c.isdigit() for c in p)] == list("1234" "125" "125" "17" "17")
    assert {" many", " pens", " has"} <= set(pieces) and "=<<" in pieces
    assert len(ids) < len("How many pens has 1234 people?\n12+5=<<12+5=17>>17") / 1.4   # 49 characters, 33 tokens


@pytest.mark.parametrize("text", ["", "plain", "héllo wörld 🌍🚀", "中文 العربية\t\n\r  x", EOT + " not special",
                                  "\x00\xff", "1,234.5 - 6 × 7 ÷ 8 − 9"])
def test_any_text_round_trips(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_save_load_is_identical(tok, tmp_path):
    tok.save(str(tmp_path / "t.json"))
    tok2 = Tokenizer.load(str(tmp_path / "t.json"))
    s = "Leo owns 42 shells. He loses 7 shells."
    assert tok2 == tok and tok2.encode(s) == tok.encode(s) and tok2.eot_id == tok.eot_id
    assert (tmp_path / "t.json").stat().st_size < 20_000


def test_training_is_deterministic_and_merges_most_frequent_pair():
    assert train_bpe("ab ab ab cd", 258) == train_bpe("ab ab ab cd", 258)
    # chunks: "ab", " ab" x2, " cd": the pair (a, b) occurs 3 times, (" ", a) twice
    assert train_bpe("ab ab ab cd", 258)[256:] == [b"ab", b" ab"]


def test_special_tokens_come_after_merges(tok):
    assert tok.eot_id == 400 and tok.n_vocab == 403


def test_vocab_smaller_than_bytes_is_an_error():
    with pytest.raises(ConfigError, match="vocab_size must be >= 256"):
        Tokenizer.train("abc", 100)


def test_bad_tokenizer_file_names_the_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"tokens": []}')
    with pytest.raises(ConfigError, match="broken.json"):
        Tokenizer.load(str(p))


def test_whole_numbers_merge_frequent_numbers_and_survive_save_load(tmp_path):
    text = "\n".join(p.question + "\n" + p.solution for p in make_problems(500, "train", seed=0))
    whole = Tokenizer.train(text, vocab_size=400, numbers="whole")
    s = "12+5=<<12+5=17>>17\n#### 17"
    pieces = [whole.decode([i]) for i in whole.encode(s)]
    assert [p for p in pieces if p.isdigit()] == ["12", "5", "12", "5", "17", "17", "17"]
    assert whole.decode(whole.encode("1234567 and 3.5")) == "1234567 and 3.5"   # rare numbers: several tokens
    whole.save(str(tmp_path / "w.json"))                                          # the pattern travels with it
    assert Tokenizer.load(str(tmp_path / "w.json")).encode(s) == whole.encode(s)


def test_unknown_number_split_is_named():
    with pytest.raises(ConfigError, match="numbers must be one of .*'words'"):
        Tokenizer.train("abc", 300, numbers="words")
