"""Forwarded e-mail bodies → who really wrote the forwarded message, to whom, when, and what it said.

Someone forwards a customer's mail to the CRM's smart-BCC address: the envelope says the forwarder sent it, but
the deal belongs to the person quoted inside. Clients mark the quoted message in a handful of ways, and the
parser is a set of data tables describing them, not code per client:

* a banner line: ``---------- Forwarded message ---------`` (Gmail), ``Begin forwarded message:`` (Apple Mail),
  ``-------- Weitergeleitete Nachricht --------`` (Thunderbird), Yahoo's banner with all headers glued onto the
  same line, in many languages;
* a rule of underscores above a header block (Outlook Live / 365);
* a bare header block ``From: / Sent: / To: / Subject:`` (Outlook desktop, new Outlook);
* an attribution line ``On <date>, "Name" <address> wrote:`` above an indented copy (Outlook 2019 for Mac).

The last two are also exactly what those clients write above a *reply*, so they only count when the subject
says the message is a forward (``FW:``, ``WG:``, ``TR:``...). A subject that says it is a reply (``Re:``,
``AW:``...) means "not a forward" whatever the body quotes. When several forwards are nested, the first one in
reading order (the outermost) is returned, and its body keeps the older ones as text.

Only the standard library is used; nothing here raises on odd input.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple


@dataclass(frozen=True)
class ForwardedAddress:
    name: str | None
    address: str | None


@dataclass(frozen=True)
class ForwardedEmail:
    subject: str | None
    date: str | None  # as the client printed it, localized; not parsed
    body: str | None
    from_: ForwardedAddress | None
    to: tuple[ForwardedAddress, ...]
    cc: tuple[ForwardedAddress, ...]


@dataclass(frozen=True)
class ForwardParse:
    forwarded: bool
    message: str | None  # the forwarder's own text above the forward, or None
    email: ForwardedEmail | None
    confidence: float  # 0..1: how sure we are that this is a forward and that the headers were read right


# --------------------------------------------------------------------------------------------------------------
# Rules. Every entry is a client or language convention; add to these tables rather than to the code below.
# --------------------------------------------------------------------------------------------------------------


class _Field(Enum):
    FROM = "from"
    TO = "to"
    CC = "cc"
    BCC = "bcc"
    DATE = "date"
    SUBJECT = "subject"
    REPLY_TO = "reply_to"
    OTHER = "other"  # recognized so that a header block is not cut short, otherwise ignored


class _SubjectKind(Enum):
    ABSENT = "absent"
    NEUTRAL = "neutral"
    FORWARD = "forward"
    REPLY = "reply"


class _Marker(Enum):
    BANNER = "banner"  # says "forwarded" in so many words
    ORIGINAL = "original"  # "Original Message": a reply or a forward
    DASHED = "dashed"  # an unknown phrase between dashes, trusted only with a full header block under it
    RULE = "rule"  # Outlook's underscore rule
    HEADERS = "headers"  # a header block with nothing above it
    ATTRIBUTION = "attribution"  # "On <date>, <who> wrote:"


# How much a marker alone says about "this is a forward"; header quality and the subject adjust it.
_MARKER_CONFIDENCE: dict[_Marker, float] = {
    _Marker.BANNER: 0.9,
    _Marker.ORIGINAL: 0.65,
    _Marker.DASHED: 0.65,
    _Marker.RULE: 0.65,
    _Marker.HEADERS: 0.6,
    _Marker.ATTRIBUTION: 0.6,
}


# Dense word lists read better as paragraphs than one entry per line.
# fmt: off
_HEADER_LABELS: dict[_Field, tuple[str, ...]] = {
    _Field.FROM: (
        "From", "Od", "Fra", "Frá", "Von", "De", "De la", "Lähettäjä", "Šalje", "Pošiljatelj", "Feladó", "Da",
        "Van", "Afzender", "Expeditorul", "Expeditor", "Отправитель", "От", "Від кого", "Від", "Från", "Kimden",
        "Gönderen", "Saatja", "Mittente", "Nadawca", "Remitente", "Nuo", "Από", "送信元", "差出人", "发件人",
        "寄件者", "보낸 사람",
    ),
    _Field.TO: (
        "To", "Komu", "Til", "Till", "An", "Para", "Vastaanottaja", "À", "A", "Prima", "Primatelj", "Címzett",
        "Aan", "Do", "Destinatarul", "Către", "Кому", "Pre", "Kime", "Pour", "Adresat", "Adresát", "Saaja",
        "Destinatario", "Destinatari", "Empfänger", "Προς", "送信先", "宛先", "收件人", "받는 사람",
    ),
    _Field.CC: (
        "Cc", "Kopie", "Kopie (CC)", "Kopio", "Másolat", "Másolatot kap", "Kopi", "Kopia", "Kópia", "Kopija",
        "Koopia", "Dw", "Копия", "Копія", "Bilgi", "Copie à", "Copia", "Κοιν.", "抄送", "副本", "참조",
    ),
    _Field.BCC: ("Bcc", "Blindkopie", "Cci", "Cco", "Bkopi", "Skrytá kopie", "Скрытая копия"),
    _Field.DATE: (
        "Date", "Sent", "Datum", "Dato", "Fecha", "Päivämäärä", "Päiväys", "Dátum", "Data", "Dată", "Дата",
        "Tarih", "Sendt", "Gesendet", "Enviado", "Envoyé", "Lähetetty", "Elküldve", "Inviato", "Verzonden",
        "Verstuurd", "Wysłano", "Wysłane", "Trimis", "Отправлено", "Odoslané", "Odesláno", "Skickat",
        "Gönderilen", "Gönderildi", "Відправлено", "Надіслано", "Poslano", "Kuupäev", "Saadetud", "Ημερομηνία",
        "日付", "送信日時", "日期", "发送时间", "날짜", "보낸 날짜",
    ),
    _Field.SUBJECT: (
        "Subject", "Předmět", "Emne", "Betreff", "Asunto", "Aihe", "Objet", "Predmet", "Tárgy", "Oggetto",
        "Onderwerp", "Temat", "Assunto", "Subiectul", "Subiect", "Тема", "Ämne", "Konu", "Sujet", "Naslov",
        "Teema", "Θέμα", "件名", "主题", "主旨", "제목",
    ),
    _Field.REPLY_TO: (
        "Reply-To", "Reply To", "Odgovori na", "Odpověď na", "Svar til", "Antwoord aan", "Vastaus", "Répondre à",
        "Antwort an", "Válaszcím", "Rispondi a", "Odpowiedź-do", "Responder A", "Responder a", "Răspuns către",
        "Ответ-Кому", "Odpovedať-Pre", "Svara till", "Yanıt Adresi", "Кому відповісти",
    ),
    _Field.OTHER: ("Importance", "Priority", "Attachments", "Wichtigkeit", "Anlagen", "Pièces jointes"),
}

# First token of a subject line. "VS" is a forward in Danish/Norwegian Outlook but a reply in Finnish; the
# Scandinavian reading wins because Finnish Outlook forwards as "VL" and would never be mistaken the other way.
_FORWARD_SUBJECT_PREFIXES = frozenset(
    p.casefold()
    for p in (
        "Fw", "Fwd", "WG", "TR", "Trs", "I", "RV", "VS", "VB", "VL", "PD", "ENC", "Redir.", "Redir",
        "Videresend", "Doorst", "İLT", "Wtr", "Pers", "Пересл", "Переслать", "転送", "转发", "轉寄", "전달",
    )
)
_REPLY_SUBJECT_PREFIXES = frozenset(
    p.casefold()
    for p in (
        "Re", "AW", "Antw", "Antwort", "SV", "Odp", "Odg", "Ynt", "Yanıt", "Vá", "RES", "R", "Rif", "Ref", "Atb",
        "Ats", "Отв", "Ответ", "Відп", "Απ", "Σχετ", "回复", "答复", "回覆", "返信", "답장",
    )
)

# Text between runs of dashes that announces a forwarded message (Gmail, Thunderbird, Yahoo, HubSpot, Missive...).
# Longer phrases first where one extends another.
_DASHED_FORWARD_PHRASES: tuple[str, ...] = (
    "Preposlaná správa --- Forwarded Message",
    "Välitetty viesti / Fwd.Msg",
    "Forwarded message", "Weitergeleitete Nachricht", "Mensaje reenviado", "Message transféré",
    "Message transmis", "Messaggio inoltrato", "Doorgestuurd bericht", "Mensagem encaminhada",
    "Mensagem reencaminhada", "Přeposlaná zpráva", "Preposlaná správa", "Videresendt meddelelse",
    "Videresendt melding", "Vidarebefordrat meddelande", "Edelleenlähetetty viesti", "Välitetty viesti",
    "Továbbított üzenet", "Przekazana wiadomość", "Treść przekazanej wiadomości", "Wiadomość przesłana dalej",
    "Mesaj redirecționat", "Mesaj redirectionat", "Пересылаемое сообщение", "Перенаправленное сообщение",
    "Пересланное сообщение", "Перенаправлене повідомлення", "Переслане повідомлення", "İletilmiş Mesaj",
    "İletilen İleti", "Proslijeđena poruka", "Posredovano sporočilo", "Edastatud kiri", "Προωθημένο μήνυμα",
    "メッセージを転送", "転送メッセージ", "转发的邮件", "轉寄的郵件", "전달된 메시지",
)
# Outlook's "-----Original Message-----" heads replies as often as forwards: it counts, but with less confidence.
_DASHED_ORIGINAL_PHRASES: tuple[str, ...] = (
    "Original Message", "Ursprüngliche Nachricht", "Originalnachricht", "Message d'origine", "Message original",
    "Mensaje original", "Messaggio originale", "Oorspronkelijk bericht", "Origineel bericht",
    "Mensagem original", "Opprinnelig melding", "Oprindelig meddelelse", "Ursprungligt meddelande",
    "Alkuperäinen viesti", "Původní zpráva", "Pôvodná správa", "Oryginalna wiadomość", "Wiadomość oryginalna",
    "Eredeti üzenet", "Исходное сообщение", "Оригинальное сообщение", "Orijinal Mesaj", "Mesaj original",
)
# A line of its own, ending with a colon (Apple Mail, MailMate).
_INTRO_PHRASES: tuple[str, ...] = (
    "Begin forwarded message", "Forwarded message", "Začátek přeposílané zprávy", "Start på videresendt besked",
    "Anfang der weitergeleiteten Nachricht", "Inicio del mensaje reenviado", "Välitetty viesti alkaa",
    "Début du message réexpédié", "Début du message transféré", "Započni proslijeđenu poruku",
    "Továbbított levél kezdete", "Inizio messaggio inoltrato", "Begin doorgestuurd bericht",
    "Videresendt melding", "Videresendt e-post", "Początek przekazywanej wiadomości",
    "Início da mensagem reencaminhada", "Início da mensagem encaminhada", "Începe mesajul redirecționat",
    "Начало переадресованного сообщения", "Начало пересылаемого сообщения", "Začiatok preposlanej správy",
    "Vidarebefordrat mejl", "İleti başlangıcı", "Початок листа, що пересилається", "転送されたメッセージ",
)
# Attribution lines, one per client language: {date} and {who} ("Name" <address>, Name (address), «Name» <...>).
# Spaces match any run of whitespace, and commas are optional, because clients differ in both.
_ATTRIBUTION_TEMPLATES: tuple[str, ...] = (
    "On {date}, {who} wrote:",  # en
    "Dne {date}, {who} napsal(a):",  # cs
    "D. {date} skrev {who}:",  # da (Outlook abbreviates "Den")
    "Den {date} skrev {who}:",  # da, sv
    "Den {date} skrev {who} følgende:",  # da
    "Den {date} skrev {who} följande:",  # sv
    "Am {date} schrieb {who}:",  # de
    "El {date}, {who} escribió:",  # es
    "Le {date}, {who} a écrit :",  # fr
    "{who} kirjoitti {date}:",  # fi
    "{date} időpontban {who} ezt írta:",  # hu
    "Il giorno {date} {who} ha scritto:",  # it
    "Op {date} heeft {who} geschreven:",  # nl
    "Op {date} schreef {who}:",  # nl
    "{who} skrev følgende den {date}:",  # no
    "Dnia {date} {who} napisał:",  # pl
    "Em {date}, {who} escreveu:",  # pt
    "{date} пользователь {who} написал:",  # ru
    "{date} používateľ {who} napísal:",  # sk
    "{who}, {date} tarihinde şunu yazdı:",  # tr
)
_MERIDIEMS = frozenset(("am", "pm", "a.m.", "p.m."))
_ON_BEHALF_OF = ("on behalf of", "im Auftrag von", "de la part de", "en nombre de", "per conto di", "namens")
# fmt: on

# --------------------------------------------------------------------------------------------------------------
# Compiled forms of the tables.
# --------------------------------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _label_pattern(label: str) -> str:
    return r"\s+".join(re.escape(word) for word in label.split())


_LABEL_TO_FIELD: dict[str, _Field] = {_fold(lbl): fld for fld, lbls in _HEADER_LABELS.items() for lbl in lbls}
_LABEL_ALTERNATION = "|".join(
    _label_pattern(label)
    for label in sorted({lbl for lbls in _HEADER_LABELS.values() for lbl in lbls}, key=len, reverse=True)
)
# "From: x", "*From:* x" (Outlook's bold labels rendered as text), "Objet : x", "件名：x". Matched against
# left-stripped lines: a leading `\s*` here would retry the whole alternation at every position of a long
# run of blanks.
_HEADER_LINE = re.compile(
    rf"^\*{{0,2}}(?P<label>{_LABEL_ALTERNATION})\*{{0,2}}[ \t]*[:：]\*{{0,2}}[ \t]*(?P<value>.*)$",
    re.IGNORECASE,
)
_INLINE_LABEL = re.compile(rf"(?P<label>{_LABEL_ALTERNATION})[ \t]?[:：]", re.IGNORECASE)

_QUOTE_PREFIX = re.compile(r"^(?:[ \t]*>)+[ \t]?")
_ONE_QUOTE_LEVEL = re.compile(r"[ \t]*>[ \t]?")
_RULE_LINE = re.compile(r"^_{20,}$")
_DASH_RUN = re.compile(r"^-{2,}")
# The phrase runs to the first dash (it holds none); a lazy phrase followed by `[ \t]*` would retry a long run
# of blanks from each of its positions.
_GENERIC_DASHED = re.compile(r"^-{2,}[ \t]*(?P<phrase>[^-\s][^-]*)-{2,}[ \t]*(?P<rest>.*)$")
_SUBJECT_PREFIX = re.compile(r"^\s*(?:\[[^\]]*\]\s*)*(?P<prefix>[^\s:：\[\]]{1,12}?)\s*[:：]\s*")

# Quantifiers are bounded by RFC 5321's length limits so that a huge garbage line cannot make a search
# quadratic.
_EMAIL_CHARS = r"[^\s<>\[\]()\"',;:]"
_BARE_ADDRESS = re.compile(rf"(?:mailto:)?({_EMAIL_CHARS}{{1,64}}@{_EMAIL_CHARS}{{1,255}})", re.IGNORECASE)
_ANGLE_ADDRESS = re.compile(r"<\s*(?:mailto:)?([^<>\s]{0,64}@[^<>\s]{0,255})\s*>", re.IGNORECASE)
_OTHER_BRACKET_ADDRESS = re.compile(
    r"[\[(]\s*<?\s*(?:mailto:)?([^\[\]()<>\s]{0,64}@[^\[\]()<>\s]{0,255})\s*>?\s*[\])]", re.IGNORECASE
)
_GLUED_MAILTO = re.compile(r"(?<=\S)<mailto:([^<>\s]*)>", re.IGNORECASE)
_SPACED_MAILTO = re.compile(r"[<\[]mailto:([^<>\[\]\s]*)[>\]]", re.IGNORECASE)
_QUOTE_PAIRS = (('"', '"'), ("'", "'"), ("«", "»"), ("„", "”"), ("„", "“"), ("“", "”"))

_WHO_ADDRESS = r"(?:<[^<>\s]+@[^<>\s]+>|\[[^\[\]\s]+@[^\[\]\s]+\]|\(\s*<?[^()<>\s]+@[^()<>\s]+>?\s*\))"
_WHO = (
    r"(?P<who>(?:\"[^\"\n]+\"|«[^»\n]+»|„[^”“\n]+[”“]|'[^'\n]+'|[^\s\d,<>\[\]()\"«»„”][^\d,<>\[\]()\"«»„”\n]*?)?"
    rf"\s*{_WHO_ADDRESS})"
)


@dataclass(frozen=True)
class _Attribution:
    # The address and the words that follow it, searched first: the full pattern tries every split of the line
    # into date and name (quadratic in the line), which is only worth doing when the line can match at all.
    address_then_words: re.Pattern[str]
    pattern: re.Pattern[str]


def _template_text(piece: str) -> str:
    parts: list[str] = []
    for char in piece:
        if char == " ":
            parts.append(r"\s+")
        elif char == ",":
            parts.append(r"\s*,?")
        elif char == ":":
            parts.append(r"\s*:")
        else:
            parts.append(re.escape(char))
    # "\s+" next to an optional comma would demand a space the client may not write; relax those joints.
    return "".join(parts).replace(r"\s*,?\s+", r"\s*,?\s*")


def _compile_attribution(template: str) -> _Attribution:
    pieces = re.split(r"(\{date\}|\{who\})", template)
    slots = {"{date}": r"(?P<date>.+?)", "{who}": _WHO}
    pattern = "".join(slots.get(piece) or _template_text(piece) for piece in pieces).replace(r"\s*,?\s+", r"\s*,?\s*")
    after_who = pieces.index("{who}") + 1
    words = _template_text(pieces[after_who]) if after_who < len(pieces) else ""
    line_end = r"\s*$" if after_who + 1 >= len(pieces) else ""
    return _Attribution(
        address_then_words=re.compile(_WHO_ADDRESS + words + line_end, re.IGNORECASE),
        pattern=re.compile(rf"^\s*{pattern}\s*$", re.IGNORECASE),
    )


_ATTRIBUTIONS = tuple(_compile_attribution(t) for t in _ATTRIBUTION_TEMPLATES)


def _dashed_phrase(phrase: str) -> re.Pattern[str]:
    # The phrase, then the closing dashes; Outlook writes "-----Original Message-----" without spaces.
    return re.compile(rf"^{_label_pattern(phrase)}[ \t]*-{{2,}}[ \t]*", re.IGNORECASE)


_DASHED_PHRASES: tuple[tuple[re.Pattern[str], _Marker], ...] = (
    *((_dashed_phrase(p), _Marker.BANNER) for p in _DASHED_FORWARD_PHRASES),
    *((_dashed_phrase(p), _Marker.ORIGINAL) for p in _DASHED_ORIGINAL_PHRASES),
)
_FOLDED_INTRO_PHRASES = frozenset(_fold(p) for p in _INTRO_PHRASES)


def _glued_colonless(field: _Field) -> re.Pattern[str]:
    # A label glued to the previous value with no colon: a long label may follow any non-blank character
    # ("CETAssunto x"), but a short one ("Dw", "An", "A") is ordinary text unless it follows the ">" that closes
    # an address.
    labels = _HEADER_LABELS[field]
    long_labels = "|".join(_label_pattern(lbl) for lbl in labels if len(lbl) >= 4)
    short_labels = "|".join(_label_pattern(lbl) for lbl in labels if len(lbl) < 4)
    alternatives = [f"(?<=\\S)(?:{long_labels})"] if long_labels else []
    if short_labels:
        alternatives.append(f"(?<=>)(?:{short_labels})")
    return re.compile(f"(?:{'|'.join(alternatives)})\\s+")


_GLUED_COLONLESS_LABELS = {field: _glued_colonless(field) for field in (_Field.CC, _Field.DATE, _Field.SUBJECT)}
_MAX_ATTRIBUTION_LENGTH = 600  # two wrapped lines at most; longer lines are prose
# RFC 5321: a mailbox is at most 64 + 1 + 255 characters; looking further back for one is wasted (and quadratic).
_MAX_ADDRESS_LENGTH = 320
# A display name longer than this is not a name; the quote-stripping loop below copies the name per pair.
_MAX_NAME_LENGTH = 1000
_ADDRESS_FIELDS = (_Field.FROM, _Field.TO, _Field.CC, _Field.BCC, _Field.REPLY_TO)
_CORE_FIELDS = (_Field.FROM, _Field.TO, _Field.CC, _Field.DATE, _Field.SUBJECT)

# --------------------------------------------------------------------------------------------------------------
# Parsing.
# --------------------------------------------------------------------------------------------------------------


class _Line(NamedTuple):  # not a frozen dataclass: one is made per line, and its __init__ costs twice as much
    raw: str
    depth: int  # how many ">" quote levels
    text: str  # the line without its quote markers


@dataclass(frozen=True)
class _Candidate:
    line: int
    marker: _Marker
    inline: str = ""  # Yahoo puts the whole header block on the banner's own line


@dataclass
class _HeaderBlock:
    fields: dict[_Field, str]
    end: int  # index of the first line after the block
    depth: int  # quote depth of the header lines


def parse_forwarded(body: str, subject: str | None = None) -> ForwardParse:
    """Find the forwarded message in a plain-text body; `subject` is the outer message's subject, if known."""
    kind, bare_subject = _classify_subject(subject)
    lines = _split_lines(_normalize(body))
    if kind is _SubjectKind.REPLY:
        # A reply may well quote a forward, but the message itself is a reply.
        hint = 0.15 if any(c.marker is _Marker.BANNER for c in _find_candidates(lines, weak=False)) else 0.0
        return ForwardParse(forwarded=False, message=None, email=None, confidence=hint)

    subject_says_forward = kind is _SubjectKind.FORWARD
    candidates = _find_candidates(lines, weak=subject_says_forward)
    for candidate in candidates:
        parsed = _read_candidate(lines, candidate, bare_subject, subject_says_forward)
        if parsed is not None:
            return parsed

    # Attribution lines are the weakest sign, so they are tried only once nothing else matched.
    if subject_says_forward:
        for index in range(len(lines)):
            parsed = _read_attribution(lines, index, bare_subject)
            if parsed is not None:
                return parsed

    banner = next((c for c in candidates if c.marker is _Marker.BANNER), None)
    if banner is not None:
        # The client said "forwarded" but what follows is no header block we can read.
        email = ForwardedEmail(
            subject=bare_subject,
            date=None,
            body=_extract_body(lines, banner.line + 1, lines[banner.line].depth),
            from_=None,
            to=(),
            cc=(),
        )
        return ForwardParse(forwarded=True, message=_message(lines, banner.line), email=email, confidence=0.4)
    if subject_says_forward:
        # Forwarded as an attachment, or in a shape we do not know: the subject is all we have.
        return ForwardParse(forwarded=True, message=None, email=None, confidence=0.3)
    return ForwardParse(forwarded=False, message=None, email=None, confidence=0.0)


def _normalize(body: str) -> str:
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    # BOMs and zero-width spaces survive copy-paste between clients in the middle of text; NBSP stands in for
    # plain spaces in HTML-to-text output.
    return text.replace("\ufeff", "").replace("\u200b", "").replace("\u00a0", " ")


def _split_lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    for raw in text.split("\n"):
        match = _QUOTE_PREFIX.match(raw) if ">" in raw else None
        if match is None:
            lines.append(_Line(raw=raw, depth=0, text=raw))
        else:
            lines.append(_Line(raw=raw, depth=match.group(0).count(">"), text=raw[match.end() :]))
    return lines


def _classify_subject(subject: str | None) -> tuple[_SubjectKind, str | None]:
    if subject is None or not subject.strip():
        return _SubjectKind.ABSENT, None
    stripped = " ".join(subject.split())
    match = _SUBJECT_PREFIX.match(stripped)
    if match is None:
        return _SubjectKind.NEUTRAL, stripped
    prefix = match.group("prefix").casefold()
    if prefix in _FORWARD_SUBJECT_PREFIXES:
        return _SubjectKind.FORWARD, stripped[match.end() :].strip()
    if prefix in _REPLY_SUBJECT_PREFIXES:
        return _SubjectKind.REPLY, stripped
    return _SubjectKind.NEUTRAL, stripped


def _find_candidates(lines: list[_Line], *, weak: bool) -> list[_Candidate]:
    """Every place a forward may start, in reading order; `weak` admits the reply-like shapes."""
    candidates: list[_Candidate] = []
    previous_is_header = False
    for index, line in enumerate(lines):
        text = line.text.strip()
        is_header = weak and _is_header_line(line.text)
        banner = _banner(text)
        if banner is not None:
            candidates.append(_Candidate(line=index, marker=banner[0], inline=banner[1]))
        elif text.startswith("__") and _RULE_LINE.match(text):
            candidates.append(_Candidate(line=index, marker=_Marker.RULE))
        elif is_header and not previous_is_header:
            candidates.append(_Candidate(line=index, marker=_Marker.HEADERS))
        previous_is_header = is_header
    return candidates


def _is_header_line(text: str) -> bool:
    # Every label is followed by a colon: a line without one skips the alternation of all labels.
    return (":" in text or "：" in text) and _HEADER_LINE.match(text.lstrip()) is not None


def _banner(text: str) -> tuple[_Marker, str] | None:
    """(marker, text after the banner on the same line) when `text` is a forward banner."""
    if text.endswith((":", "：")) and _fold(text[:-1]) in _FOLDED_INTRO_PHRASES:
        return _Marker.BANNER, ""
    dashes = _DASH_RUN.match(text) if text.startswith("--") else None
    if dashes is None:
        return None
    after = text[dashes.end() :].lstrip()
    for pattern, marker in _DASHED_PHRASES:
        phrase = pattern.match(after)
        if phrase is not None:
            return marker, after[phrase.end() :]
    generic = _GENERIC_DASHED.match(text)
    if generic is not None and any(ch.isalpha() for ch in generic.group("phrase")):
        return _Marker.DASHED, generic.group("rest")
    return None


def _read_candidate(
    lines: list[_Line], candidate: _Candidate, bare_subject: str | None, subject_says_forward: bool
) -> ForwardParse | None:
    block: _HeaderBlock | None = None
    if candidate.inline:
        fields = _parse_inline_headers(candidate.inline)
        if fields:
            block = _HeaderBlock(fields=fields, end=candidate.line + 1, depth=lines[candidate.line].depth)
    if block is None:
        first = candidate.line if candidate.marker is _Marker.HEADERS else candidate.line + 1
        block = _parse_header_block(lines, _skip_blank(lines, first, limit=2))
    if block is None or not _acceptable(block.fields, candidate.marker):
        return None

    fields = block.fields
    from_ = _parse_mailboxes(fields[_Field.FROM], single=True) if _Field.FROM in fields else ()
    email = ForwardedEmail(
        subject=fields.get(_Field.SUBJECT, bare_subject),
        date=fields.get(_Field.DATE) or None,
        body=_extract_body(lines, block.end, block.depth),
        from_=from_[0] if from_ else None,
        to=_parse_mailboxes(fields.get(_Field.TO, "")),
        cc=_parse_mailboxes(fields.get(_Field.CC, "")),
    )
    confidence = _confidence(candidate.marker, email, subject_says_forward)
    return ForwardParse(forwarded=True, message=_message(lines, candidate.line), email=email, confidence=confidence)


def _acceptable(fields: dict[_Field, str], marker: _Marker) -> bool:
    core = sum(1 for f in _CORE_FIELDS if f in fields)
    if marker is _Marker.BANNER:
        return core >= 1
    if _Field.FROM not in fields:
        return False
    # Without a banner, only a block that looks like a whole message header is believed.
    return core >= (3 if marker is _Marker.HEADERS else 2)


def _skip_blank(lines: list[_Line], start: int, *, limit: int) -> int:
    index = start
    while index < len(lines) and index - start < limit and not lines[index].text.strip():
        index += 1
    return index


def _parse_header_block(lines: list[_Line], start: int) -> _HeaderBlock | None:
    # Values are collected as pieces and joined once: a wrapped address list can run over many thousands of
    # lines, and re-joining it per line would copy it as many times.
    pieces: dict[_Field, list[str]] = {}
    last: _Field | None = None
    index = start
    while index < len(lines):
        text = lines[index].text
        match = _HEADER_LINE.match(text.lstrip())
        if match is not None:
            field = _LABEL_TO_FIELD.get(_fold(match.group("label")), _Field.OTHER)
            if field in pieces and field is not _Field.OTHER:
                break  # a second From/To/...: the next nested message starts here without a blank line
            pieces[field] = [match.group("value").strip()]
            last = field
        elif last is not None and _continues(text, last, pieces[last][-1]):
            pieces[last].append(text.strip())
        else:
            break
        index += 1
    fields = {field: " ".join(values) for field, values in pieces.items()}
    return _HeaderBlock(fields=fields, end=index, depth=lines[start].depth) if fields else None


def _continues(text: str, field: _Field, value: str) -> bool:
    """Whether `text` is a wrapped continuation of an address list rather than the first body line."""
    if not text.strip() or field not in _ADDRESS_FIELDS:
        return False
    return value.endswith((",", ";")) or (text[:1].isspace() and "@" in text)


def _parse_inline_headers(text: str) -> dict[_Field, str]:
    """Split Yahoo's `From: a <x>To: b <y>Cc: ...Sent: ...Subject: s` into fields."""
    hits: list[tuple[int, int, _Field]] = []
    for match in _INLINE_LABEL.finditer(text):
        start = match.start()
        # Glued labels follow a ">", a digit or an upper-case time-zone ("CETSubject:"), never a lower-case
        # letter: that would be a word inside a value ending in a colon.
        if start > 0 and text[start - 1].islower():
            continue
        field = _LABEL_TO_FIELD.get(_fold(match.group("label")), _Field.OTHER)
        if any(field is seen for _, _, seen in hits) and field is not _Field.OTHER:
            continue
        hits.append((start, match.end(), field))
    if not hits or text[: hits[0][0]].strip():
        return {}
    fields: dict[_Field, str] = {}
    for position, (_, value_start, field) in enumerate(hits):
        value_end = hits[position + 1][0] if position + 1 < len(hits) else len(text)
        fields[field] = text[value_start:value_end].strip()
    _recover_colonless_labels(fields)
    return fields


def _recover_colonless_labels(fields: dict[_Field, str]) -> None:
    """Some Yahoo locales drop the colon after a label ("... CETAssunto Subject text"): split those out."""
    for missing, glued in _GLUED_COLONLESS_LABELS.items():
        if missing in fields:
            continue
        for field, value in list(fields.items()):
            match = glued.search(value)
            if match is not None and not value[match.start() - 1].islower():
                fields[field] = value[: match.start()].strip()
                fields[missing] = value[match.end() :].strip()
                break


def _read_attribution(lines: list[_Line], index: int, bare_subject: str | None) -> ForwardParse | None:
    text = lines[index].text.strip()
    if not text or len(text) > _MAX_ATTRIBUTION_LENGTH:
        return None
    # Some clients wrap a long attribution line; try it joined with the next one too.
    tries = [(text, index + 1)]
    if index + 1 < len(lines) and lines[index + 1].text.strip():
        tries.append((f"{text} {lines[index + 1].text.strip()}", index + 2))
    for candidate_text, body_start in tries:
        # Every template names an address and ends with a colon: skip the regexes for ordinary lines.
        if "@" not in candidate_text or not candidate_text.endswith((":", "：")):
            continue
        for attribution in _ATTRIBUTIONS:
            if attribution.address_then_words.search(candidate_text) is None:
                continue
            match = attribution.pattern.match(candidate_text)
            if match is None:
                continue
            date, who_text = _split_meridiem(match.group("date").strip(" ,"), match.group("who"))
            who = _parse_mailboxes(who_text, single=True)
            email = ForwardedEmail(
                subject=bare_subject,
                date=date or None,
                body=_extract_body(lines, body_start, lines[index].depth),
                from_=who[0] if who else None,
                to=(),
                cc=(),
            )
            confidence = _confidence(_Marker.ATTRIBUTION, email, subject_says_forward=True)
            return ForwardParse(forwarded=True, message=_message(lines, index), email=email, confidence=confidence)
    return None


def _split_meridiem(date: str, who: str) -> tuple[str, str]:
    """Gmail writes "On <date> at 9:31 AM John Doe <x@y> wrote:" with no comma before the name; the regex
    cannot tell "AM" from a name, so move it back to the date."""
    first, _, rest = who.strip().partition(" ")
    if rest and first.casefold() in _MERIDIEMS:
        return f"{date} {first}", rest
    return date, who


def _message(lines: list[_Line], marker_line: int) -> str | None:
    text = "\n".join(line.raw for line in lines[:marker_line]).strip()
    return text or None


def _extract_body(lines: list[_Line], start: int, header_depth: int) -> str:
    region = lines[start:]
    # The forwarded message was quoted as a whole at the depth of its headers (Apple Mail, MailMate), or only
    # its body was (Missive): strip that much and keep deeper quotes, which belong to the original message.
    body_depth = min((line.depth for line in region if line.text.strip()), default=0)
    depth = max(header_depth, body_depth)
    stripped: list[str] = []
    for line in region:
        raw = _without_quote_levels(line.raw, min(depth, line.depth))
        stripped.append("" if not raw.strip() else raw)
    # Outlook 2019 indents the forwarded copy instead of quoting it.
    return textwrap.dedent("\n".join(stripped)).strip()


def _without_quote_levels(raw: str, levels: int) -> str:
    """`raw` without its first `levels` quote markers (each with the blanks around it), in one pass: a line
    quoted ten thousand levels deep must not be copied once per level."""
    position = 0
    for _ in range(levels):
        match = _ONE_QUOTE_LEVEL.match(raw, position)
        if match is None:
            break
        position = match.end()
    return raw[position:]


def _parse_mailboxes(value: str, *, single: bool = False) -> tuple[ForwardedAddress, ...]:
    text = _resolve_mailto(value)
    if single:
        text = _cut_on_behalf_of(text)
    pieces = _split_mailbox_list(text)
    mailboxes = tuple(mb for piece in pieces if (mb := _parse_mailbox(piece)) is not None)
    return mailboxes[:1] if single else mailboxes


def _resolve_mailto(value: str) -> str:
    """Drop Outlook's link annotations: `x@y<mailto:x@y>` keeps `x@y`, `Name<mailto:x@y>` becomes `Name <x@y>`."""

    def glued(match: re.Match[str]) -> str:
        before = value[max(0, match.start() - _MAX_ADDRESS_LENGTH) : match.start()]
        token = re.split(r"[\s<>\[\],;]", before)[-1]
        return "" if "@" in token else f" <{match.group(1)}>"

    return _SPACED_MAILTO.sub(r"<\1>", _GLUED_MAILTO.sub(glued, value))


def _cut_on_behalf_of(text: str) -> str:
    folded = text.casefold()
    for phrase in _ON_BEHALF_OF:
        position = folded.find(f" {phrase.casefold()} ")
        if position > 0 and "@" in text[:position]:
            return text[:position]
    return text


def _split_mailbox_list(text: str) -> list[str]:
    """Split on "," and ";" outside quotes and brackets; a comma piece with no address is part of a name."""
    pieces: list[tuple[str, str]] = []  # (text, separator that ended it)
    current: list[str] = []
    depth = 0
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "<[(":
            depth += 1
        elif not quoted and char in ">])":
            depth = max(0, depth - 1)
        elif not quoted and depth == 0 and char in ",;":
            pieces.append(("".join(current), char))
            current = []
            continue
        current.append(char)
    pieces.append(("".join(current), ""))

    merged: list[str] = []
    carry = ""
    for raw, separator in pieces:
        piece = carry + raw
        carry = ""
        if separator == "," and "@" not in piece and piece.strip():
            carry = piece + ","  # "Doe, John <john@x>" lost its comma to the split; put it back
            continue
        if piece.strip():
            merged.append(piece.strip())
    if carry.strip(" ,"):
        merged.append(carry.strip(" ,"))
    return merged


def _parse_mailbox(piece: str) -> ForwardedAddress | None:
    text = piece.strip()
    if not text:
        return None
    match = _ANGLE_ADDRESS.search(text) or _OTHER_BRACKET_ADDRESS.search(text)
    if match is not None:
        address = match.group(1)
        name = _clean_name(text[: match.start()])
        if name is None and match.start() == 0:
            name = _clean_name(text[match.end() :])  # "<x@y> (Name)"
    else:
        bare = _BARE_ADDRESS.search(text)
        if bare is None:
            return ForwardedAddress(name=_clean_name(text), address=None)
        address = bare.group(1)
        name = _clean_name(text[: bare.start()] + text[bare.end() :])
    address = address.strip().strip(".")
    if name is not None and name.casefold() == address.casefold():
        name = None
    return ForwardedAddress(name=name, address=address or None)


def _clean_name(text: str) -> str | None:
    name = text.strip()[:_MAX_NAME_LENGTH].rstrip("(").strip()
    if name.startswith("(") and name.endswith(")"):
        name = name[1:-1].strip()
    changed = True
    while changed and len(name) >= 2:
        changed = False
        for opening, closing in _QUOTE_PAIRS:
            if name.startswith(opening) and name.endswith(closing) and len(name) >= 2:
                name = name[len(opening) : -len(closing)].strip()
                changed = True
    return name.replace('\\"', '"') or None


def _confidence(marker: _Marker, email: ForwardedEmail, subject_says_forward: bool) -> float:
    score = _MARKER_CONFIDENCE[marker]
    if subject_says_forward:
        score += 0.08 if marker is _Marker.BANNER else 0.25
    if email.from_ is None or email.from_.address is None:
        score -= 0.3
    if email.date is None:
        score -= 0.05
    if email.subject is None:
        score -= 0.05
    return round(min(max(score, 0.0), 0.99), 2)
