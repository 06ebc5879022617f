import pytest

from selfinstruct.config import UserError
from selfinstruct.corpus import normalize, read_corpus, source_tag, split_sentences, split_windows

from .conftest import SAMPLE_EN, SAMPLE_ZH


@pytest.fixture(scope="module")
def tokenizer(embedded_model):
    from selfinstruct.models import load_tokenizer

    return load_tokenizer(embedded_model)


def assert_spans_match(corpus, windows):
    assert windows, "no windows"
    for w in windows:
        assert corpus.text[w.start:w.end] == w.text
    assert windows[0].start <= 10 and windows[-1].end >= len(corpus.text.rstrip()) - 1


def test_ascii_windows_keep_their_spans_and_overlap(tokenizer):
    corpus = read_corpus(SAMPLE_EN)
    windows = split_windows(corpus, tokenizer, window_tokens=200, overlap=40)
    assert_spans_match(corpus, windows)
    assert all(len(tokenizer.tokenize(w.text)) <= 200 for w in windows)
    pairs = zip(windows, windows[1:], strict=False)
    assert any(b.start < a.end for a, b in pairs), "consecutive windows should overlap"


def test_crlf_and_bom_file(tmp_path, tokenizer):
    text = SAMPLE_EN.read_text(encoding="utf-8")[:4000].replace("\n", "\r\n")
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    corpus = read_corpus(path)
    assert corpus.encoding == "utf-8-sig" and not corpus.text.startswith("\ufeff") and "\r\n" in corpus.text
    assert_spans_match(corpus, split_windows(corpus, tokenizer, window_tokens=120, overlap=20))


def test_chinese_windows_end_at_sentence_marks(tokenizer):
    corpus = read_corpus(SAMPLE_ZH)
    assert corpus.language == "zh"
    windows = split_windows(corpus, tokenizer, window_tokens=120, overlap=20)
    assert_spans_match(corpus, windows)
    assert sum(w.text.endswith(("。", "！", "？", "；")) for w in windows) >= len(windows) - 1


def test_gb18030_chinese_is_decoded(tmp_path):
    path = tmp_path / "gbk.txt"
    path.write_bytes(SAMPLE_ZH.read_text(encoding="utf-8").encode("gb18030"))
    corpus = read_corpus(path)
    assert corpus.encoding == "gb18030" and "苍箬镇" in corpus.text


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"  \n\r\n\t ", "empty"),
    (b"\x00\x01\x02binary\x00data" * 20, "binary"),
    ("caf\xe9 cr\xe8me br\xfbl\xe9e, a Latin-1 file".encode("latin-1"), "neither UTF-8 nor Chinese"),
])
def test_bad_corpora_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_corpus(path)


def test_missing_corpus_and_directory(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_corpus(tmp_path / "nope.txt")
    with pytest.raises(UserError, match="directory"):
        read_corpus(tmp_path)


def test_source_tag_is_stable_and_content_derived():
    corpus = read_corpus(SAMPLE_EN)
    tag = source_tag(corpus.sha256)
    assert tag == source_tag(read_corpus(SAMPLE_EN).sha256)
    assert tag.startswith("Source:") and tag.endswith("REF") and tag[7:11].isdigit()
    assert tag != source_tag(read_corpus(SAMPLE_ZH).sha256)


def test_normalize_whitespace():
    assert normalize("The  harbour\r\n of\tVelmoor ") == "The harbour of Velmoor"
    assert normalize("苍箬镇\n是一座小镇。\n 箬川河") == "苍箬镇是一座小镇。箬川河"


def test_sentences_keep_offsets():
    text = "Velmoor is old. Orric Velm came\nin 1041!\n\nHeading\n\n苍箬镇很小。箬川河很长。"
    spans = split_sentences(text, offset=100)
    pieces = [text[s - 100:e - 100] for s, e in spans]
    # A line break inside a sentence (wrapped text) does not end it; a blank line does.
    assert pieces == ["Velmoor is old.", "Orric Velm came\nin 1041!", "Heading", "苍箬镇很小。", "箬川河很长。"]
