"""A subject as a thread key: without the reply/forward prefixes and gateway markers that clients add.

"Re: [sales] AW: Fwd: Angebot" and "[sales] Angebot" are the same conversation. Clients translate the prefix
(AW, SV, VS, Antw, Odp, 回复, Отв, …), number it (RE[2], Re^2, Re(3)), put it inside a list tag or outside, and
mail gateways add "[EXT]" banners. Mailing-list tags ("[sales]", "[PATCH]") are kept, in the order they first
appear, wherever the prefixes put them: they tell two lists' "Meeting notes" apart.
"""

from __future__ import annotations

import re
import unicodedata

# Reply and forward abbreviations, casefolded, in the languages mail clients ship (Outlook, Apple Mail, Gmail,
# Thunderbird, Lotus, Foxmail…). Single letters ("R", "I") are Italian Outlook's; they only count before a colon.
_PREFIXES = (
    # reply
    "re",
    "aw",  # de: Antwort
    "sv",  # da, no, sv, is: svar
    "vs",  # fi: vastaus (and da: videresendt)
    "antw",  # nl
    "antwort",
    "odp",  # pl
    "odg",  # hr, sr, sl
    "r",  # it
    "rif",  # it
    "res",  # pt-br
    "ynt",  # tr: yanıt
    "atb",  # lv
    "ats",  # lt
    "vá",  # hu: válasz
    "răsp",  # ro
    "odpověď",  # cs
    "отв",  # ru
    "ответ",
    "відп",  # uk
    "απ",  # el
    "σχετ",
    "回复",  # zh-hans
    "回覆",  # zh-hant
    "答复",
    "答覆",
    "返信",  # ja
    "답장",  # ko
    "تعقيب",  # ar
    "رد",
    "תגובה",  # he
    "השב",
    # forward
    "fw",
    "fwd",
    "wg",  # de: weitergeleitet
    "vb",  # sv: vidarebefordrat
    "vl",  # fi: välitetty
    "fs",  # is: framsent
    "doorst",  # nl: doorsturen
    "pd",  # pl: przekaż dalej
    "tr",  # fr: transféré
    "trans",
    "rv",  # es: reenviado
    "enc",  # pt: encaminhado
    "i",  # it: inoltrato
    "ilt",  # tr: iletilen
    "i̇lt",  # tr, as "İLT" casefolds
    "továbbítás",  # hu
    "přeposlat",  # cs
    "пересл",  # ru
    "πρθ",  # el
    "转发",  # zh-hans
    "轉寄",  # zh-hant
    "轉發",
    "転送",  # ja
    "전달",  # ko
    "הועבר",  # he
    "توجيه",  # ar
    # mail gateways that mark outside senders with a prefix instead of a tag
    "ext",
    "external",
)
_PREFIX = re.compile(
    r"(?:" + "|".join(re.escape(p) for p in sorted(_PREFIXES, key=len, reverse=True)) + r")"
    # RE[2]:, Re(2):, Re^2:, Re*2: — the counters some clients keep instead of repeating the prefix.
    r"(?:\s*(?:\[\d+\]|\(\d+\)|\^\d+|\*\d+))?"
    r"\s*[:：]\s*"
)
_TAG = re.compile(r"\[([^\[\]]*)\]\s*")
# Banners that security gateways and spam filters add; they say nothing about the conversation.
_MARKER = re.compile(
    r"(?:ext|external|extern|externe?|externo|ekstern|external\s+(?:e-?mail|sender|message|mail)"
    r"|caution(?:\s*[:-]?\s*external(?:\s+(?:e-?mail|sender))?)?|warning(?:\s*[:-]?\s*external)?"
    r"|spam|possible\s+spam|suspected\s+spam|probable\s+spam|suspicious|\*+spam\*+)"
)
_STAR_MARKER = re.compile(r"\*+\s*(?:external|ext|spam)\s*\*+\s*")
_FWD_SUFFIX = re.compile(r"\s*\((?:fwd|fw)\)\s*$")
_WHITESPACE = re.compile(r"\s+")
_MAX_SUBJECT_CHARS = 2000
_NOT_WORD = re.compile(r"[\W_]+")

# Subjects that many unrelated conversations share: a message without references must not join by these.
_GENERIC = frozenset(
    {
        "",
        "hi",
        "hey",
        "hello",
        "hi there",
        "hello there",
        "hallo",
        "hola",
        "bonjour",
        "salut",
        "ciao",
        "hej",
        "moin",
        "guten tag",
        "question",
        "questions",
        "a question",
        "quick question",
        "short question",
        "frage",
        "kurze frage",
        "anfrage",
        "pregunta",
        "consulta",
        "domanda",
        "vraag",
        "inquiry",
        "enquiry",
        "request",
        "info",
        "information",
        "fyi",
        "update",
        "follow up",
        "followup",
        "following up",
        "checking in",
        "thanks",
        "thank you",
        "danke",
        "merci",
        "gracias",
        "meeting",
        "call",
        "test",
        "testing",
        "no subject",
        "untitled",
        "kein betreff",
        "sans objet",
        "sin asunto",
        "senza oggetto",
        "important",
        "urgent",
    }
)


def normalize_subject(subject: str | None) -> str:
    """The subject without reply/forward prefixes and gateway markers, casefolded, list tags first."""
    # Each prefix removed re-reads the rest, so the work grows with (prefixes × length): only the head of a
    # hostile subject ("Re: " ten thousand times) is read. Real subjects are far shorter than this.
    text = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", (subject or "")[:_MAX_SUBJECT_CHARS])).strip()
    tags: list[str] = []
    while text:
        lowered = text.casefold()
        prefix = _PREFIX.match(lowered)
        if prefix is not None:
            text = text[_original_length(text, prefix.end()) :]
            continue
        star = _STAR_MARKER.match(lowered)
        if star is not None:
            text = text[_original_length(text, star.end()) :]
            continue
        tag = _TAG.match(text)
        if tag is None:
            break
        content = _WHITESPACE.sub(" ", tag.group(1)).strip()
        rest = text[tag.end() :]
        if _MARKER.fullmatch(content.casefold()):
            text = rest
        elif _PREFIX.match(content.casefold()):
            # "[Fwd: Original subject]": old clients wrap the whole forwarded subject.
            text = f"{content} {rest}".strip()
        else:
            if content.casefold() not in tags:
                tags.append(content.casefold())
            text = rest
    while (suffix := _FWD_SUFFIX.search(text.casefold())) is not None:
        text = text[: suffix.start()]
    core = text.casefold().strip()
    return " ".join([*(f"[{tag}]" for tag in tags), core]).strip() if core or tags else ""


def subject_key(subject: str | None) -> str | None:
    """The normalized subject if it is specific enough to join a thread by, else None ("Hi", "Question", "")."""
    normalized = normalize_subject(subject)
    core = _NOT_WORD.sub(" ", _without_tags(normalized)).strip()
    if core in _GENERIC or len(core) < 3:
        return None
    return normalized


def _without_tags(normalized: str) -> str:
    while (tag := _TAG.match(normalized)) is not None:
        normalized = normalized[tag.end() :]
    return normalized


def _original_length(text: str, folded_length: int) -> int:
    """How much of `text` its casefolded form's first `folded_length` characters came from.

    Casefolding can change lengths ("ß" → "ss", "İ" → "i̇"), so an offset into the folded text is mapped back.
    """
    if len(text.casefold()) == len(text):
        return folded_length
    consumed = 0
    for index, char in enumerate(text):
        if consumed >= folded_length:
            return index
        consumed += len(char.casefold())
    return len(text)
