"""Read and validate a corpus, give it a stable source tag, and cut it into token-sized sliding windows that
keep their character span in the decoded file (`corpus.text[start:end] == window.text`)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .config import UserError

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Coarse to fine; the Chinese sentence ends keep a sentence whole where a paragraph does not fit a window.
SEPARATORS = ["\r\n\r\n", "\n\n", "\r\n", "\n", "。", "！", "？", "；", ". ", "? ", "! ", "; ", "，", ", ", " ", ""]
# What a complete sentence ends with (a closing quote or bracket may follow its stop).
SENTENCE_ENDINGS = (".", "!", "?", "。", "！", "？", "；", '"', "”", ")")
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+(?=[\"'“‘(]?[A-Z0-9])|(?<=[。！？；])|\n\s*\n|\r\n\s*\r\n")


@dataclass(frozen=True)
class Corpus:
    path: Path
    text: str  # decoded: BOM removed, line ends as in the file, so offsets are plain str indices
    sha256: str  # of the file's bytes
    encoding: str
    language: str  # en | zh


@dataclass(frozen=True)
class Window:
    index: int
    start: int
    end: int
    text: str


def read_corpus(path: str | Path, language: str = "auto") -> Corpus:
    path = Path(path)
    if not path.exists():
        raise UserError(f"corpus not found: {path}")
    if path.is_dir():
        raise UserError(f"corpus is a directory, not a text file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read corpus {path}: {e.strerror}") from None
    if not raw.strip():
        raise UserError(f"corpus is empty: {path}")
    text, encoding = decode(raw, path)
    if not text.strip():
        raise UserError(f"corpus is empty: {path}")
    lang = detect_language(text) if language == "auto" else language
    return Corpus(path, text, hashlib.sha256(raw).hexdigest(), encoding, lang)


def decode(raw: bytes, path: Path) -> tuple[str, str]:
    """UTF-8, UTF-16 with its byte-order mark, or Chinese GB18030/GBK; anything else is refused with the
    encoding it most looks like, never read as garbled text."""
    for bom, encoding in ((b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(encoding), encoding
            except UnicodeDecodeError:
                raise UserError(f"corpus starts with a UTF-16 byte-order mark but is not UTF-16 text: {path}") from None
    head = raw[:65536]
    if any(_reads_as_text(head, encoding) for encoding in ("utf-16-le", "utf-16-be")):
        raise UserError(f"corpus looks like UTF-16 without a byte-order mark: {path} (convert it to UTF-8)")
    controls = sum(b < 9 or 13 < b < 32 for b in head)
    if b"\x00" in head or controls > len(head) * 0.01:
        raise UserError(f"corpus looks binary, not text: {path}")
    try:
        return raw.decode("utf-8-sig"), "utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"
    except UnicodeDecodeError:
        pass
    japanese = _japanese_encoding(raw)
    if japanese:  # GB18030 would read these bytes too, as garbled Chinese
        raise UserError(f"corpus looks like Japanese {japanese} text, not UTF-8 or Chinese GB18030: {path} "
                        "(convert it to UTF-8)")
    text = _decoded(raw, "gb18030")  # a superset of GBK and GB2312, the usual encodings of Chinese text files
    non_ascii = [c for c in text or "" if ord(c) > 127]
    if non_ascii and sum(bool(CJK.match(c)) for c in non_ascii) / len(non_ascii) > 0.5:
        return text, "gb18030"
    found = " (it reads as Windows-1252/Latin-1)" if _decoded(raw, "cp1252") else ""
    raise UserError(f"corpus is neither UTF-8 nor Chinese GB18030/GBK text{found}: {path} (convert it to UTF-8)")


def _decoded(raw: bytes, encoding: str) -> str | None:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None


def _reads_as_text(head: bytes, encoding: str) -> bool:
    text = _decoded(head[:len(head) // 2 * 2], encoding) or ""
    plain = sum(" " <= c <= "~" or c in "\t\r\n" or bool(CJK.match(c)) or "\u3000" <= c <= "\u303f" for c in text)
    return b"\x00" in head and plain > 0.95 * len(text)  # English or Chinese text, not binary that decodes


def _japanese_encoding(raw: bytes) -> str | None:
    """Shift_JIS or EUC-JP, when the bytes decode in it and a good share of the result is kana, which Chinese
    text never holds."""
    for encoding, name in (("shift_jis", "Shift_JIS"), ("euc_jp", "EUC-JP")):
        text = _decoded(raw, encoding)
        non_ascii = [c for c in text or "" if ord(c) > 127]
        if non_ascii and sum("\u3040" <= c <= "\u30ff" for c in non_ascii) / len(non_ascii) > 0.15:
            return name
    return None


def detect_language(text: str) -> str:
    sample = text[:20000]
    letters = sum(c.isalpha() for c in sample) or 1
    return "zh" if len(CJK.findall(sample)) / letters > 0.2 else "en"


def source_tag(sha256: str) -> str:
    """A short marker that is stable for one corpus content, e.g. Source:8989REF."""
    return f"Source:{int(sha256[:12], 16) % 10000:04d}REF"


def normalize(text: str) -> str:
    """Whitespace runs become one space (none between two CJK characters, where a line break is no space).
    Only prompts see this; spans always point into the original text."""
    text = re.sub(r"(?<=[\u3400-\u9fff\uff00-\uffef。，、；：！？])\s+(?=[\u3400-\u9fff\uff00-\uffef])", "", text)
    return re.sub(r"\s+", " ", text).strip()


def upper_first(text: str) -> str:
    """The first letter in capitals, the rest untouched (str.capitalize would lower a name inside)."""
    return text[:1].upper() + text[1:]


def split_windows(corpus: Corpus, tokenizer, window_tokens: int = 400, overlap: int = 50) -> list[Window]:
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer, chunk_size=window_tokens, chunk_overlap=overlap, separators=SEPARATORS,
        keep_separator="end", strip_whitespace=True)
    windows, cursor = [], 0
    for chunk in splitter.split_text(corpus.text):
        start = corpus.text.find(chunk, cursor)
        if start < 0:  # the splitter only ever cuts, so a chunk not found is a bug, not bad input
            raise RuntimeError(f"window {len(windows)} is not a span of the corpus")
        windows.append(Window(len(windows), start, start + len(chunk), chunk))
        cursor = start + 1
    return windows


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Sentence spans [start, end) of `text`, shifted by `offset`, whitespace trimmed."""
    spans, start = [], 0
    for match in SENTENCE_END.finditer(text):
        spans.append((start, match.start()))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for s, e in spans:
        piece = text[s:e]
        s += len(piece) - len(piece.lstrip())
        e -= len(piece) - len(piece.rstrip())
        if e > s:
            trimmed.append((s + offset, e + offset))
    return trimmed
