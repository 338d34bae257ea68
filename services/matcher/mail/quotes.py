"""Extract the new text of an e-mail reply for timeline previews.

A reply body usually carries the whole conversation: the sender's new words,
then (or, when bottom-posting, before them) an attribution line such as
"On <date>, <name> wrote:", ">"-quoted history, Outlook-style "From:/Sent:"
blocks and a signature.  ``extract_new_text`` keeps only the new words.

Every language-specific word lives in the vocabulary tables below; the
algorithm itself only knows about line kinds (text, quote, blank, separator)
and header spans, so supporting another language or client is a data change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from html.parser import HTMLParser
from typing import NamedTuple

__all__ = ["MAX_HTML_CHARS", "MAX_QUOTE_SCAN_CHARS", "extract_new_text", "html_to_text"]

# Bounds that keep one message's analysis small whatever its shape. Only the head of a longer body is read for
# its new text (a preview, and the reply's own words come first); only the head of longer HTML becomes text.
MAX_QUOTE_SCAN_CHARS = 1_000_000
MAX_HTML_CHARS = 2_000_000
# Deeper blockquotes are drawn at this depth: each level adds "> " to every line inside it.
MAX_QUOTE_DEPTH = 50


# --------------------------------------------------------------------------
# Vocabulary.  Regex fragments, matched case-insensitively.
# --------------------------------------------------------------------------

# Verbs that close an attribution line ("... wrote:").
_WROTE_VERBS: tuple[str, ...] = (
    r"wrote",
    r"writes",
    r"has written",
    r"schrieb",
    r"geschrieben",
    r"schreef",
    r"a\s+[ée]crit",
    r"[ée]crit",
    r"escribi[óo]",
    r"ha\s+escrito",
    r"escreveu",
    r"escrevi",
    r"ha\s+scritto",
    r"scrisse",
    r"skrev",
    r"skrifaði",
    r"kirjoitti",
    r"kirjutas",
    r"napisa[łl]\s*\(a\)",
    r"napisa[łl]a?",
    r"napsal[a]?",
    r"napisao",
    r"написал\s*\(а\)",
    r"написала?",
    r"написав",
    r"пише",
    r"писал",
    r"[íi]rta",
    r"yazd[ıi]",
    r"ra[šs][ėe]",
    r"rakst[īi]ja",
    r"έγραψε",
    r"a\s+scris",
    r"כתב",
    r"كتب",
    r"đã\s+viết",
    r"menulis",
    r"写道",
    r"寫道",
    r"が書きました",
    r"のメッセージ",
    r"님이\s*작성",
)

# Words that start an attribution line.  Only used to decide how far up a
# header wrapped over several lines reaches, never to detect one on its own.
_LEAD_WORDS: tuple[str, ...] = (
    r"on",
    r"am",
    r"le",
    r"el",
    r"il",
    r"in\s+data",
    r"op",
    r"em",
    r"den",
    r"dnia",
    r"w\s+dniu",
    r"p[åa]",
    r"dne",
    r"at",
    r"в",
    r"у",
    r"在",
    r"於",
)

# Outlook/webmail "From: ... Sent: ..." header keys, per field.
_HEADER_KEYS: dict[str, tuple[str, ...]] = {
    "from": (
        r"from",
        r"von",
        r"de",
        r"van",
        r"da",
        r"fr[åa]n",
        r"fra",
        r"fr[áa]",
        r"od",
        r"от",
        r"від",
        r"l[äa]hett[äa]j[äa]",
        r"felad[óo]",
        r"kimden",
        r"afzender",
        r"remetente",
        r"mittente",
        r"exp[ée]diteur",
        r"remitente",
        r"nadawca",
        r"发件人",
        r"寄件者",
        r"差出人",
        r"보낸\s*사람",
    ),
    "date": (
        r"sent",
        r"date",
        r"gesendet",
        r"datum",
        r"envoy[ée](?:\s+le)?",
        r"verzonden",
        r"inviato",
        r"data",
        r"enviado(?:\s+el)?",
        r"fecha",
        r"skickat",
        r"sendt",
        r"l[äa]hetetty",
        r"wys[łl]ano",
        r"отправлено",
        r"дата",
        r"надіслано",
        r"elk[üu]ldve",
        r"d[áa]tum",
        r"g[öo]nderildi",
        r"tarih",
        r"odesl[áa]no",
        r"发送时间",
        r"日期",
        r"寄件日期",
        r"送信日時",
        r"보낸\s*날짜",
    ),
    "to": (
        r"to",
        r"an",
        r"[àa]",
        r"aan",
        r"till",
        r"til",
        r"para",
        r"do",
        r"кому",
        r"vastaanottaja",
        r"c[íi]mzett",
        r"komu",
        r"kime",
        r"destinataire",
        r"destinatario",
        r"收件人",
        r"收件者",
        r"宛先",
        r"받는\s*사람",
    ),
    "cc": (
        r"cc",
        r"kopie",
        r"copie(?:\s+[àa])?",
        r"c[óo]pia",
        r"kopia",
        r"копия",
        r"kopio",
        r"másolat",
        r"抄送",
        r"副本",
    ),
    "subject": (
        r"subject",
        r"betreff",
        r"objet",
        r"onderwerp",
        r"oggetto",
        r"[äa]mne",
        r"emne",
        r"asunto",
        r"assunto",
        r"temat",
        r"тема",
        r"aihe",
        r"t[áa]rgy",
        r"p[řr]edm[ěe]t",
        r"konu",
        r"sujet",
        r"主题",
        r"主旨",
        r"件名",
        r"제목",
    ),
    "reply-to": (
        r"reply-to",
        r"risposta",
        r"antwort\s+an",
        r"r[ée]pondre\s+[àa]",
        r"responder\s+a",
        r"beantwoorden",
    ),
}

# Separator lines introducing quoted or forwarded history
# ("-----Original Message-----", "Begin forwarded message:").
_HISTORY_PHRASES: tuple[str, ...] = (
    r"original\s+message",
    r"original\s+e-?mail",
    r"forwarded\s+message",
    r"forwarded\s+e-?mail",
    r"begin\s+forwarded\s+message",
    r"reply\s+message",
    r"urspr[üu]ngliche\s+nachricht",
    r"weitergeleitete\s+nachricht",
    r"anfang\s+der\s+weitergeleiteten\s+nachricht",
    r"mensaje\s+original",
    r"mensaje\s+reenviado",
    r"mensagem\s+original",
    r"mensagem\s+encaminhada",
    r"messaggio\s+originale",
    r"messaggio\s+inoltrato",
    r"inizio\s+messaggio\s+inoltrato",
    r"message\s+d'origine",
    r"message\s+d’origine",
    r"message\s+original",
    r"message\s+transf[ée]r[ée]",
    r"d[ée]but\s+du\s+message\s+(?:r[ée]exp[ée]di[ée]|transf[ée]r[ée])",
    r"oorspronkelijk\s+bericht",
    r"origineel\s+bericht",
    r"doorgestuurd\s+bericht",
    r"ursprungligt\s+meddelande",
    r"vidarebefordrat\s+meddelande",
    r"opprinnelig\s+melding",
    r"videresendt\s+melding",
    r"oprindelig\s+besked",
    r"videresendt\s+besked",
    r"videresendt\s+meddelelse",
    r"alkuper[äa]inen\s+viesti",
    r"v[äa]litetty\s+viesti",
    r"wiadomo[śs][ćc]\s+oryginalna",
    r"oryginalna\s+wiadomo[śs][ćc]",
    r"przekazana\s+wiadomo[śs][ćc]",
    r"исходное\s+сообщение",
    r"пересылаемое\s+сообщение",
    r"пересланное\s+сообщение",
    r"původní\s+zpráva",
    r"přeposlaná\s+zpráva",
    r"eredeti\s+üzenet",
    r"orijinal\s+mesaj",
    r"原始邮件",
    r"原始郵件",
    r"转发的邮件",
    r"元のメッセージ",
    r"転送されたメッセージ",
    r"원본\s*메시지",
    r"전달된\s*메시지",
)

# Whole-line "sent from my device" signatures.  Each pattern must match from
# the start of the line, so a sentence that merely mentions "sent from my
# iPhone" is left alone.
_DEVICE_SIGNATURES: tuple[str, ...] = (
    r"sent\s+(?:from|with|via|using|by|on)\b",
    r"get\s+outlook\s+for\b",
    r"envoy[ée]\s+(?:depuis|de|à\s+partir\s+de|a\s+partir\s+de|avec|par|du)\b",
    r"(?:von|vom)\s+mein(?:em|er)?\b.*\bgesendet\b",
    r"gesendet\s+(?:von|mit|vom|aus|über)\b",
    r"diese\s+nachricht\s+wurde\s+von\s+mein(?:em|er)\b.*\bgesendet\b",
    r"(?:verzonden|verstuurd)\s+(?:vanaf|van|met|via)\b",
    r"enviado\s+(?:desde|do|da|de|con|com|via|a\s+partir)\b",
    r"inviato\s+(?:da|dal|dalla|dallo|con|tramite)\b",
    r"(?:skickat|skickad|sendt|sent)\s+(?:från|fra|frå|med)\b",
    r"l[äa]hetetty\s+\S+",
    r"wys[łl]ane\s+(?:z|ze|przez)\b",
    r"отправлено\s+(?:с|из|через)\b",
    r"надіслано\s+(?:з|із|через)\b",
    r"odesl[áa]no\s+(?:z|ze)\b",
)
# The same for languages that put the verb last ("iPhone から送信"): what may come before the verb, and the verb
# spelled out, which must end the line.
_DEVICE_SIGNATURES_VERB_LAST: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r".{1,40}['’]?(?:dan|den|tan|ten)\s+", ("gönderildi", "gonderildi")),
    (r"(?:从|從)我的.{1,30}", ("发送", "傳送", "發送")),
    (r".{1,30}", ("から送信",)),
    (r".{1,30}에서\s*", ("보냄",)),
)


def _alternation(fragments: tuple[str, ...]) -> str:
    # Longest first so "a écrit" wins over "écrit" and "envoyé le" over "envoyé".
    return "|".join(sorted(fragments, key=len, reverse=True))


_FLAGS = re.IGNORECASE


def _first_characters(fragments: tuple[str, ...]) -> str:
    # Each fragment starts with a literal or a [class]; a lookahead on the
    # union lets the engine skip positions without trying every verb.
    chars = "".join(f[1 : f.index("]")] if f.startswith("[") else f[0] for f in fragments)
    return re.escape("".join(sorted(set(chars))))


_VERB = rf"(?=[{_first_characters(_WROTE_VERBS)}])(?:{_alternation(_WROTE_VERBS)})"
# Only alphabetic scripts need word boundaries; CJK verbs follow the name
# directly ("…周一写道：").
_ALPHABETIC = r"a-zA-Z\u00C0-\u024F\u0370-\u03FF\u0400-\u04FF"
_WORD_BOUNDARY_L = rf"(?<![{_ALPHABETIC}])"
_WORD_BOUNDARY_R = rf"(?![{_ALPHABETIC}])"

# Attribution ending with a verb: "On ..., Bob <b@x> wrote:".
_RE_ENDS_WITH_VERB = re.compile(rf"{_WORD_BOUNDARY_L}(?:{_VERB}){_WORD_BOUNDARY_R}\s*[:：]?$", _FLAGS)
# Verb somewhere inside: "Bob <b@x> schrieb am Di., 16. Aug. 2016 um 12:52 Uhr:".
_RE_HAS_VERB = re.compile(rf"{_WORD_BOUNDARY_L}(?:{_VERB}){_WORD_BOUNDARY_R}", _FLAGS)
# The local part starts where its run of address characters starts: a search may otherwise retry the run from
# each of its positions, which is quadratic on a long line of letters without an "@" after them.
_RE_EMAIL = re.compile(r"(?<![\w.+'’-])[\w.+'’-]+@[\w-]+(?:\.[\w-]+)+", _FLAGS)
# No verb at all: "ср, 30 апр. 2025 г. в 15:19, John Doe <doe@example.com>:".
_RE_ENDS_WITH_ADDRESS = re.compile(r"(?<![\w.+'’-])[\w.+'’-]+@[\w-]+(?:\.[\w-]+)+[\s>)\]]*[:：]$", _FLAGS)
# Old Gmail: "2016-03-03 17:21 GMT+01:00 Some One", "2013/7/20 bob <b@x>".
_RE_ISO_DATE_LEAD = re.compile(
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:\s+\d{1,2}:\d{2}(?::\d{2})?)?\s*"
    r"(?P<gmt>GMT\s*[+-]\s*\d{1,2}:?\d{2})?\s*(?P<rest>.*)$",
    _FLAGS,
)
_RE_ISO_DATE_LEAD_QUICK = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")
_VERB_TAIL_CHARS = 40
_ADDRESS_TAIL_CHARS = 160
_DECORATION = " \t*_=~—–-"
_RE_TIME = re.compile(r"\d{1,2}[:.h]\d{2}")
_RE_NUMERIC_DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
_RE_YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
_RE_LEAD_WORD = re.compile(rf"^(?:{_alternation(_LEAD_WORDS)})(?=[\s,])", _FLAGS)

# Runs of blanks and decoration around the key are one character class, never `\s*[*_]*\s*`: adjacent
# quantifiers over the same characters try every split of a long run of spaces, and one such line of 30 KB used
# to stop the matcher for minutes. The same holds for the key-value and separator patterns below.
_RE_HEADER_KEY = re.compile(
    r"^\s*[*_]*\s*(?:"
    + "|".join(rf"(?P<{kind.replace('-', '_')}>{_alternation(keys)})" for kind, keys in _HEADER_KEYS.items())
    + r")[\s*_]*[:：]",
    _FLAGS,
)
# A short "Key : value" line glued above a header block ("Message du : ...").
_RE_KEY_VALUE = re.compile(r"^\s*[*_]*[^\W\d_][\w .'’-]{0,30}?[\s*_]*[:：]\s*\S", _FLAGS)

_RE_HISTORY_SEPARATOR = re.compile(
    rf"^(?P<pre>[\s*_=~-]*)(?=[{_first_characters(_HISTORY_PHRASES)}])(?:" + _alternation(_HISTORY_PHRASES) + r")"
    r"(?P<post>[\s*_=~:：-]*)$",
    _FLAGS,
)
_RE_DEVICE_SIGNATURE = re.compile(r"^(?:" + "|".join(_DEVICE_SIGNATURES) + r")", _FLAGS)
_RE_DEVICE_SIGNATURE_VERB_LAST = re.compile(
    r"^(?:"
    + "|".join(lead + "(?:" + "|".join(map(re.escape, verbs)) + ")$" for lead, verbs in _DEVICE_SIGNATURES_VERB_LAST)
    + r")",
    _FLAGS,
)
# The last letter of those verbs, looked for first: a leading `.{1,40}` tries every split of the line, and nearly
# every line fails on its last character.
_RE_DEVICE_SIGNATURE_LAST_LETTER = re.compile(
    "[" + "".join(sorted({re.escape(verb[-1]) for _, verbs in _DEVICE_SIGNATURES_VERB_LAST for verb in verbs})) + "]$",
    _FLAGS,
)
# "-- " is the RFC 3676 signature delimiter; many clients drop the space.
_RE_SIGNATURE_DELIMITER = re.compile(r"^--[ \t]*$")
# Lines made of decoration only ("-----", "_____", "ᐧ"): never content.
_RE_SEPARATOR_ONLY = re.compile(r"^[\s\-_=~*#+.•·ᐧ—–]+$")
_RE_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]")
_RE_FOOTER_RULE = re.compile(r"^(?:_{2,}|[—–]+)$")
_MAX_FOOTER_LINES = 6
_RE_QUOTE_PREFIX = re.compile(r"^[ \t]*((?:>[ \t]?)+)")

# Longest attribution we accept, and how many lines one may wrap over.
_MAX_HEADER_CHARS = 400
_MAX_HEADER_LINES = 5
# A quoted line at least this long was probably hard-wrapped by the client.
_WRAPPED_QUOTE_MIN_CHARS = 60


# --------------------------------------------------------------------------
# Line model
# --------------------------------------------------------------------------


class _Kind(Enum):
    EMPTY = "e"
    QUOTE = "q"
    SEPARATOR = "s"
    TEXT = "t"


class _Line(NamedTuple):  # not a frozen dataclass: one is made per line, and its __init__ costs twice as much
    raw: str
    depth: int
    content: str
    kind: _Kind


@dataclass(frozen=True)
class _Header:
    start: int
    end: int  # inclusive
    # Attributions may be followed by an interleaved answer; Outlook blocks
    # and "Original Message" separators never are.
    interleavable: bool


def _parse_line(raw: str, has_invisible: bool) -> _Line:
    # Direction marks and zero-width characters (Hebrew/Arabic Gmail
    # headers, tracking characters) are invisible and must not defeat the
    # end-of-line patterns. `has_invisible`: whether the whole text holds any.
    visible = _RE_INVISIBLE.sub("", raw) if has_invisible else raw
    match = _RE_QUOTE_PREFIX.match(visible) if ">" in visible else None
    if match:
        depth = match.group(1).count(">")
        content = visible[match.end() :].strip()
        return _Line(raw, depth, content, _Kind.QUOTE)
    content = visible.strip()
    if not content:
        return _Line(raw, 0, "", _Kind.EMPTY)
    if _RE_SEPARATOR_ONLY.match(content):
        return _Line(raw, 0, content, _Kind.SEPARATOR)
    return _Line(raw, 0, content, _Kind.TEXT)


def _rejoin_wrapped_quotes(lines: list[_Line]) -> list[_Line]:
    """Clients hard-wrap long quoted lines and lose the ">" on the tail.

    A short unquoted line squeezed between a long quoted line and another
    quoted line is such a tail, not an interleaved answer.
    """
    fixed = list(lines)
    for i in range(1, len(lines) - 1):
        line, prev, nxt = lines[i], lines[i - 1], lines[i + 1]
        if (
            line.kind is _Kind.TEXT
            and prev.kind is _Kind.QUOTE
            and nxt.kind is _Kind.QUOTE
            and len(prev.raw) >= _WRAPPED_QUOTE_MIN_CHARS
        ):
            fixed[i] = _Line(line.raw, prev.depth, line.content, _Kind.QUOTE)
    return fixed


# --------------------------------------------------------------------------
# Header detection
# --------------------------------------------------------------------------


def _has_date_or_time(text: str) -> bool:
    return bool(_RE_TIME.search(text) or _RE_NUMERIC_DATE.search(text) or _RE_YEAR.search(text))


def _is_attribution(text: str) -> bool:
    text = text.strip(_DECORATION)
    if not text or len(text) > _MAX_HEADER_CHARS:
        return False
    dated = _has_date_or_time(text)
    has_email = bool(_RE_EMAIL.search(text))
    if _ends_with_verb(text) and (dated or has_email):
        # The verb alone ("wrote:") is only the tail of a wrapped header.
        head = text[:-_VERB_TAIL_CHARS] + _RE_ENDS_WITH_VERB.sub("", text[-_VERB_TAIL_CHARS:])
        return bool(head.strip(" ,"))
    ends_with_colon = text.endswith((":", "："))
    if ends_with_colon and dated and _RE_HAS_VERB.search(text):
        return True
    if dated and _RE_ENDS_WITH_ADDRESS.search(text[-_ADDRESS_TAIL_CHARS:]):
        return True
    iso = _RE_ISO_DATE_LEAD.match(text)
    if iso:
        rest = iso.group("rest")
        if re.search(r"[^\W\d_]", rest) and (iso.group("gmt") or _RE_EMAIL.search(rest)):
            return True
    return False


def _ends_with_verb(text: str) -> bool:
    # The verb sits at the very end; searching only the tail keeps the big
    # alternation from being tried at every position of a long line.
    # Every verb ends with a letter or ")" ("napisał(a)"), followed only by
    # blanks and a colon (`$` also allows one final newline): most lines
    # ("... by Friday.") fail on that and skip the search.
    before_colon = text.removesuffix("\n")
    if before_colon.endswith((":", "：")):
        before_colon = before_colon[:-1]
    last = before_colon.rstrip()[-1:]
    if not (last.isalpha() or last == ")"):
        return False
    return bool(_RE_ENDS_WITH_VERB.search(text[-_VERB_TAIL_CHARS:]))


def _may_end_header(content: str) -> bool:
    """Cheap filter: every attribution ends with a colon or a verb, or is old Gmail's date line."""
    content = content.strip(_DECORATION)
    return content.endswith((":", "：")) or _ends_with_verb(content) or bool(_RE_ISO_DATE_LEAD_QUICK.match(content))


def _looks_like_header_start(text: str) -> bool:
    """Could an attribution wrapped over several lines begin here?"""
    text = text.strip(_DECORATION)
    if not text:
        return False
    if _RE_LEAD_WORD.match(text) and re.search(r"\d", text):
        return True
    first_tokens = text.split()[:3]
    return any(re.search(r"\d", token) for token in first_tokens)


def _find_attributions(lines: list[_Line]) -> list[_Header]:
    headers: list[_Header] = []
    claimed_until = -1
    for end in range(len(lines)):
        if lines[end].kind is _Kind.EMPTY or not _may_end_header(lines[end].content):
            continue
        best: int | None = None
        smallest: int | None = None
        for size in range(1, _MAX_HEADER_LINES + 1):
            start = end - size + 1
            if start <= claimed_until or start < 0:
                break
            window = lines[start : end + 1]
            if window[0].kind is _Kind.EMPTY:
                continue
            joined = " ".join(line.content for line in window if line.content)
            if len(joined) > _MAX_HEADER_CHARS:
                break
            if not _is_attribution(joined):
                continue
            if smallest is None:
                smallest = start
            if size == 1 or _looks_like_header_start(window[0].content):
                best = start
        chosen = best if best is not None else smallest
        if chosen is not None:
            headers.append(_Header(chosen, end, interleavable=True))
            claimed_until = end
    return headers


def _header_kind(content: str) -> str | None:
    if ":" not in content and "：" not in content:
        return None  # every key is followed by a colon; most lines have none and skip the big alternation
    match = _RE_HEADER_KEY.match(content)
    if not match:
        return None
    for kind, value in match.groupdict().items():
        if value is not None:
            return kind
    return None


def _find_header_blocks(lines: list[_Line]) -> list[_Header]:
    """Outlook-style "From: / Sent: / To: / Subject:" blocks (unquoted)."""
    blocks: list[_Header] = []
    n = len(lines)
    i = 0
    while i < n:
        if lines[i].kind is not _Kind.TEXT or _header_kind(lines[i].content) is None:
            i += 1
            continue
        kinds: set[str] = set()
        j = i
        last = i
        while j < n and lines[j].kind is _Kind.TEXT:
            kind = _header_kind(lines[j].content)
            if kind is not None:
                kinds.add(kind)
                last = j
            elif not (j + 1 < n and _header_kind(lines[j + 1].content) is not None):
                # A value wrapped onto its own line is allowed only between
                # two keys; anything else ends the block.
                break
            j += 1
        if ("from" in kinds and len(kinds) >= 2) or len(kinds) >= 3:
            start = i
            while start > 0 and lines[start - 1].kind is _Kind.TEXT and _RE_KEY_VALUE.match(lines[start - 1].content):
                start -= 1
            blocks.append(_Header(start, last, interleavable=False))
        i = last + 1
    return blocks


def _find_history_separators(lines: list[_Line]) -> list[_Header]:
    found: list[_Header] = []
    for i, line in enumerate(lines):
        if line.kind not in (_Kind.TEXT, _Kind.SEPARATOR):
            continue
        match = _RE_HISTORY_SEPARATOR.match(line.content)
        if not match:
            continue
        # Bare words ("original message") are only a marker when decorated
        # with dashes or announced with a colon, as clients write them.
        decorated = len(match.group("pre").strip()) >= 2 or len(match.group("post").strip(" :：")) >= 2
        if decorated or match.group("post").strip().endswith((":", "：")):
            found.append(_Header(i, i, interleavable=False))
    return found


def _find_headers(lines: list[_Line]) -> dict[int, _Header]:
    by_start: dict[int, _Header] = {}
    covered: set[int] = set()
    # Strong markers first: an Outlook block must not be read as attribution.
    candidates = _find_history_separators(lines) + _find_header_blocks(lines)
    candidates += _find_attributions(lines)
    for header in candidates:
        span = set(range(header.start, header.end + 1))
        if span & covered:
            continue
        covered |= span
        by_start[header.start] = header
    return by_start


# --------------------------------------------------------------------------
# Trimming
# --------------------------------------------------------------------------


def _is_device_signature(content: str) -> bool:
    content = content.strip("()<>[]*_ ")
    if len(content) > 120:
        return False
    if _RE_DEVICE_SIGNATURE.match(content):
        return True
    return bool(_RE_DEVICE_SIGNATURE_LAST_LETTER.search(content[-2:]) and _RE_DEVICE_SIGNATURE_VERB_LAST.match(content))


def _skip_quote_block(lines: list[_Line], i: int) -> int:
    """Index just past the quoted block starting at or after blank lines at i."""
    j = i
    while j < len(lines) and lines[j].kind is _Kind.EMPTY:
        j += 1
    if j >= len(lines) or lines[j].kind is not _Kind.QUOTE:
        return i
    while j < len(lines) and lines[j].kind in (_Kind.QUOTE, _Kind.EMPTY):
        j += 1
    return j


def _has_answer_after(lines: list[_Line], i: int, headers: dict[int, _Header]) -> bool:
    """Is there unquoted text between position i and the next history marker?"""
    for j in range(i, len(lines)):
        line = lines[j]
        # A rule line after the quote introduces a list footer or a
        # signature, not an answer.
        if j in headers or line.kind is _Kind.SEPARATOR or _RE_SIGNATURE_DELIMITER.match(line.raw):
            return False
        if line.kind is _Kind.TEXT:
            return not _is_device_signature(line.content)
    return False


def _drop_history(lines: list[_Line], headers: dict[int, _Header]) -> list[_Line]:
    kept: list[_Line] = []
    seen_text = False
    i = 0
    while i < len(lines):
        header = headers.get(i)
        if header is not None and not seen_text:
            # Bottom-posting: history comes first, the answer follows.
            i = _skip_quote_block(lines, header.end + 1)
            continue
        if header is not None and lines[i].depth == 0:
            after_quote = _skip_quote_block(lines, header.end + 1)
            interleaved = (
                header.interleavable and after_quote > header.end + 1 and _has_answer_after(lines, after_quote, headers)
            )
            if not interleaved:
                break
            # Inline answers: keep the quoted context, drop the attribution.
            i = header.end + 1
            continue
        line = lines[i]
        kept.append(line)
        if line.kind is _Kind.TEXT:
            seen_text = True
        i += 1
    return kept


def _is_footer_rule(lines: list[_Line], i: int) -> bool:
    """An underscore or em-dash rule followed by a few short closing lines.

    Mailing-list footers ("____ / foo mailing list / foo@lists...") and
    signature cards look like this; ASCII "----"/"====" rules are left
    alone because people use them as headings inside their text.
    """
    if lines[i].kind is not _Kind.SEPARATOR or not _RE_FOOTER_RULE.match(lines[i].content):
        return False
    tail = [line for line in lines[i + 1 :] if line.kind is not _Kind.EMPTY]
    return 0 < len(tail) <= _MAX_FOOTER_LINES and all(
        line.kind is _Kind.TEXT and len(line.content) <= 100 for line in tail
    )


def _drop_signature(lines: list[_Line]) -> list[_Line]:
    for i, line in enumerate(lines):
        if line.depth:
            continue
        if (
            _RE_SIGNATURE_DELIMITER.match(line.raw)
            or (line.kind is _Kind.TEXT and _is_device_signature(line.content))
            or _is_footer_rule(lines, i)
        ):
            return lines[:i]
    return lines


def _trim_edges(lines: list[_Line]) -> list[_Line]:
    has_text = any(line.kind is _Kind.TEXT for line in lines)
    # Trailing quotes are the history of a top-posted reply; a message that
    # is nothing but a quote keeps it, since there is nothing else to show.
    trailing = {_Kind.EMPTY, _Kind.SEPARATOR} | ({_Kind.QUOTE} if has_text else set())
    end = len(lines)
    while end > 0 and lines[end - 1].kind in trailing:
        end -= 1
    start = 0
    while start < end and lines[start].kind is _Kind.EMPTY:
        start += 1
    return lines[start:end]


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")


def extract_new_text(text: str) -> str:
    """The reply's own text.

    Quoted history ("On … wrote:", ">"-quotes, Outlook
    "-----Original Message-----"/"From: … Sent: …" blocks, in many
    languages) and the trailing signature ("-- ", "Sent from my iPhone", …)
    are removed; the result is trimmed of surrounding blank lines.
    """
    text = _normalise_newlines(text[:MAX_QUOTE_SCAN_CHARS])
    has_invisible = _RE_INVISIBLE.search(text) is not None
    lines = [_parse_line(raw, has_invisible) for raw in text.split("\n")]
    lines = _rejoin_wrapped_quotes(lines)
    headers = _find_headers(lines)
    kept = _drop_history(lines, headers)
    kept = _drop_signature(kept)
    kept = _trim_edges(kept)
    return "\n".join(line.raw.rstrip() for line in kept)


# --------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "center",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tbody",
        "thead",
        "tfoot",
        "tr",
        "ul",
    }
)
_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template", "xml"})
_VOID_TAGS = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base"})
_HR_TEXT = "_" * 32
_RE_WHITESPACE_RUN = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[tuple[int, str]] = []
        self._current: list[str] = []
        self._current_depth = 0
        self._quote_depth = 0
        self._skip_depth = 0
        self._pre_depth = 0

    def _flush(self, force_blank: bool = False) -> None:
        text = "".join(self._current).rstrip()
        # Indentation is meaningful inside <pre> (code, aligned tables).
        if not self._pre_depth:
            text = text.lstrip()
        if text.strip():
            self.lines.append((self._current_depth, text))
        elif force_blank:
            self.lines.append((self._quote_depth, ""))
        self._current = []

    def _write(self, text: str) -> None:
        if not self._current:
            self._current_depth = self._quote_depth
        self._current.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            if tag not in _VOID_TAGS:
                self._skip_depth += 1
            return
        if self._skip_depth:
            return
        if tag == "br":
            self._flush(force_blank=True)
        elif tag == "hr":
            self._flush()
            self.lines.append((self._quote_depth, _HR_TEXT))
        elif tag in _BLOCK_TAGS:
            self._flush()
            if tag == "blockquote":
                self._quote_depth += 1
            elif tag == "pre":
                self._pre_depth += 1
            elif tag == "li":
                self._write("- ")
        elif tag in ("td", "th"):
            self._write(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skip_depth = max(0, self._skip_depth - 1)
            return
        if self._skip_depth:
            return
        if tag in _BLOCK_TAGS:
            self._flush()
            if tag == "blockquote":
                self._quote_depth = max(0, self._quote_depth - 1)
            elif tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        data = data.replace("\xa0", " ")
        if self._pre_depth:
            parts = data.split("\n")
            for index, part in enumerate(parts):
                if index:
                    self._flush(force_blank=True)
                if part:
                    self._write(part)
            return
        collapsed = _RE_WHITESPACE_RUN.sub(" ", data)
        if not self._current:
            collapsed = collapsed.lstrip()
        if collapsed:
            self._write(collapsed)

    def close(self) -> None:
        super().close()
        self._flush()


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body.

    Block elements become newlines, blockquotes are kept as '>'-quoted lines
    so extract_new_text can remove them, entities are decoded and
    script/style are dropped.
    """
    parser = _TextExtractor()
    parser.feed(_tamed(html[:MAX_HTML_CHARS]))
    parser.close()
    out: list[str] = []
    for depth, text in parser.lines:
        line = ("> " * min(depth, MAX_QUOTE_DEPTH) + text).rstrip()
        # Consecutive <br>s and empty blocks add up; one blank line is enough.
        if not text and out and not out[-1].strip("> "):
            continue
        out.append(line)
    while out and not out[0].strip("> "):
        out.pop(0)
    while out and not out[-1].strip("> "):
        out.pop()
    return "\n".join(out)


def _tamed(html: str) -> str:
    """The HTML with the shapes removed that make `html.parser` quadratic: it rescans to the end of the input from
    every "<!--" without "-->" and every "<" without a ">" before the next "<". Comments are dropped (an unclosed
    one hides the rest, as in browsers) and a "<" that cannot open a tag becomes text. One pass; each search
    position only moves forward."""
    out: list[str] = []
    position = 0
    next_open = html.find("<")
    next_close = -2  # not searched yet; -1 once there is no ">" left
    while next_open >= 0:
        out.append(html[position:next_open])
        if html.startswith("<!--", next_open):
            end = html.find("-->", next_open + 4)
            if end < 0:
                return "".join(out)
            position = end + 3
            next_open = html.find("<", position)
            continue
        if next_close != -1 and next_close <= next_open:
            next_close = html.find(">", next_open + 1)
        following = html.find("<", next_open + 1)
        if next_close < 0 or 0 <= following < next_close:
            out.append("&lt;")
            position = next_open + 1
        else:
            out.append(html[next_open : next_close + 1])
            position = next_close + 1
            following = html.find("<", position)
        next_open = following
    out.append(html[position:])
    return "".join(out)
