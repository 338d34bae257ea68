"""`parse_forwarded` on hand-written bodies shaped like what each client produces.

The shared crisp corpus is measured separately (`python -m eval.forwarded_crisp`); these fixtures are our own so
that the suite runs anywhere.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matcher.mail.forwards import ForwardedAddress, ForwardedEmail, ForwardParse, parse_forwarded


def _email(result: ForwardParse) -> ForwardedEmail:
    assert result.forwarded
    assert result.email is not None
    return result.email


GMAIL_EN = """\
Can you follow up with them this week?

Thanks,
Priya

---------- Forwarded message ---------
From: Marta Kowalczyk <marta@baltic-freight.example>
Date: Tue, 14 May 2024 at 08:02
Subject: Container pricing for Q3
To: <sales@ourcrm.example>
Cc: Ops Team <ops@baltic-freight.example>, tomas@baltic-freight.example

Hello,

We would like a quote for 40 containers.

Marta
"""


def test_gmail_forward_with_a_message_above() -> None:
    result = parse_forwarded(GMAIL_EN, "Fwd: Container pricing for Q3")
    email = _email(result)
    assert result.message == "Can you follow up with them this week?\n\nThanks,\nPriya"
    assert email.subject == "Container pricing for Q3"
    assert email.date == "Tue, 14 May 2024 at 08:02"
    assert email.from_ == ForwardedAddress("Marta Kowalczyk", "marta@baltic-freight.example")
    assert email.to == (ForwardedAddress(None, "sales@ourcrm.example"),)
    assert email.cc == (
        ForwardedAddress("Ops Team", "ops@baltic-freight.example"),
        ForwardedAddress(None, "tomas@baltic-freight.example"),
    )
    assert email.body == "Hello,\n\nWe would like a quote for 40 containers.\n\nMarta"
    assert result.confidence >= 0.9


def test_crlf_line_endings_give_the_same_result() -> None:
    lf = parse_forwarded(GMAIL_EN, "Fwd: Container pricing for Q3")
    crlf = parse_forwarded(GMAIL_EN.replace("\n", "\r\n"), "Fwd: Container pricing for Q3")
    assert crlf == lf


APPLE_DE_QUOTED = """\
Siehe unten.

> Anfang der weitergeleiteten Nachricht:
>
> Von: Jonas Weber <j.weber@stahlbau.example>
> Betreff: Lieferung verschoben
> Datum: 3. Juni 2024 um 09:41:12 MESZ
> An: einkauf@ourcrm.example
> Kopie: Lena Fischer <l.fischer@stahlbau.example>
>
> Guten Morgen,
> die Lieferung kommt erst am Freitag.
>
> > Wann kommt die Lieferung?
"""


def test_apple_mail_german_quoted_forward_keeps_deeper_quotes() -> None:
    result = parse_forwarded(APPLE_DE_QUOTED)
    email = _email(result)
    assert result.message == "Siehe unten."
    assert email.subject == "Lieferung verschoben"
    assert email.from_ == ForwardedAddress("Jonas Weber", "j.weber@stahlbau.example")
    assert email.to == (ForwardedAddress(None, "einkauf@ourcrm.example"),)
    assert email.cc == (ForwardedAddress("Lena Fischer", "l.fischer@stahlbau.example"),)
    # The forward's own quote level is removed, the original message's quote stays.
    assert email.body == "Guten Morgen,\ndie Lieferung kommt erst am Freitag.\n\n> Wann kommt die Lieferung?"


OUTLOOK_LIVE_FR = """\
Pour info.

________________________________
De : Camille Martin <camille.martin@vignobles.example>
Envoyé : jeudi 6 juin 2024 17:20
À : Achats <achats@ourcrm.example>; Hugo Bernard <hugo@ourcrm.example>
Objet : Commande 2024-118

Bonjour, la commande est confirmée.
"""


def test_outlook_live_french_with_underscore_rule() -> None:
    result = parse_forwarded(OUTLOOK_LIVE_FR, "TR: Commande 2024-118")
    email = _email(result)
    assert result.message == "Pour info."
    assert email.date == "jeudi 6 juin 2024 17:20"
    assert email.from_ == ForwardedAddress("Camille Martin", "camille.martin@vignobles.example")
    assert email.to == (
        ForwardedAddress("Achats", "achats@ourcrm.example"),
        ForwardedAddress("Hugo Bernard", "hugo@ourcrm.example"),
    )
    assert email.subject == "Commande 2024-118"
    assert email.body == "Bonjour, la commande est confirmée."


NEW_OUTLOOK_NL = """\
Zie hieronder.

Van: Sanne de Vries <sanne@tulp-logistiek.example>
Datum: maandag 10 juni 2024 om 11:05
Aan: verkoop@ourcrm.example <verkoop@ourcrm.example>
Onderwerp: Offerte aanvraag
Wij willen graag een offerte.
"""


def test_bare_header_block_counts_when_the_subject_says_forward() -> None:
    email = _email(parse_forwarded(NEW_OUTLOOK_NL, "FW: Offerte aanvraag"))
    assert email.from_ == ForwardedAddress("Sanne de Vries", "sanne@tulp-logistiek.example")
    # "x@y <x@y>": the client filled the name with the address.
    assert email.to == (ForwardedAddress(None, "verkoop@ourcrm.example"),)
    assert email.body == "Wij willen graag een offerte."


@pytest.mark.parametrize("subject", [None, "Offerte aanvraag", "Re: Offerte aanvraag", "AW: Offerte aanvraag"])
def test_bare_header_block_is_a_reply_unless_the_subject_says_forward(subject: str | None) -> None:
    result = parse_forwarded(NEW_OUTLOOK_NL, subject)
    assert not result.forwarded
    assert result.email is None


def test_reply_subject_wins_over_a_quoted_forward_banner() -> None:
    result = parse_forwarded(GMAIL_EN, "Re: Fwd: Container pricing for Q3")
    assert not result.forwarded
    assert 0.0 < result.confidence < 0.5  # a forward banner was seen, so not a flat zero


THUNDERBIRD_ES = """\
-------- Mensaje reenviado --------
Asunto: \tReunión del martes
Fecha: \tMon, 17 Jun 2024 12:30:00 +0200
De: \tLucía Gómez <lucia@olivares.example>
Para: \tventas@ourcrm.example
CC: \tPablo Ruiz <pablo@olivares.example>



Hola, confirmamos la reunión.
"""


def test_thunderbird_spanish_tab_separated_headers() -> None:
    result = parse_forwarded(THUNDERBIRD_ES)
    email = _email(result)
    assert result.message is None
    assert email.subject == "Reunión del martes"
    assert email.from_ == ForwardedAddress("Lucía Gómez", "lucia@olivares.example")
    assert email.cc == (ForwardedAddress("Pablo Ruiz", "pablo@olivares.example"),)
    assert email.body == "Hola, confirmamos la reunión."


YAHOO_IT = (
    "   ----- Messaggio inoltrato ----- Da: Giulia Conti <giulia@pastificio.example>A: "
    '"vendite@ourcrm.example" <vendite@ourcrm.example>Cc: Marco <marco@pastificio.example>; '
    "luca@pastificio.example Inviato: lunedì 1 luglio 2024, 10:11:12 CESTOggetto: Ordine di luglio\n"
    " Buongiorno, ecco l'ordine.\n"
)


def test_yahoo_headers_glued_on_the_banner_line() -> None:
    email = _email(parse_forwarded(YAHOO_IT))
    assert email.from_ == ForwardedAddress("Giulia Conti", "giulia@pastificio.example")
    assert email.to == (ForwardedAddress(None, "vendite@ourcrm.example"),)
    assert email.cc == (
        ForwardedAddress("Marco", "marco@pastificio.example"),
        ForwardedAddress(None, "luca@pastificio.example"),
    )
    assert email.date == "lunedì 1 luglio 2024, 10:11:12 CEST"
    assert email.subject == "Ordine di luglio"
    assert email.body == "Buongiorno, ecco l'ordine."


OUTLOOK_2019_SV = (
    '\ufeffDen 2024-06-20 14:03 skrev "Erik Lindqvist" <erik@skogsbruk.example> följande:\r\n'
    "\r\n"
    "    Hej,\r\n"
    "    vi behöver fler pallar.\r\n"
)


def test_outlook_2019_attribution_line_with_indented_copy() -> None:
    result = parse_forwarded(OUTLOOK_2019_SV, "VB: Pallar")
    email = _email(result)
    assert email.from_ == ForwardedAddress("Erik Lindqvist", "erik@skogsbruk.example")
    assert email.date == "2024-06-20 14:03"
    assert email.subject == "Pallar"  # only the outer subject carries it
    assert email.body == "Hej,\nvi behöver fler pallar."
    assert email.to == ()


HUBSPOT_JA = """\
---------- メッセージを転送 ---------
送信元：佐藤 花子 <hanako@sakura-boeki.example>
日付：2024年7月2日火曜日 10:15:00 +0900
件名：見積もりのお願い
送信先：sales@ourcrm.example

よろしくお願いします。
"""


def test_japanese_labels_with_full_width_colons() -> None:
    email = _email(parse_forwarded(HUBSPOT_JA))
    assert email.from_ == ForwardedAddress("佐藤 花子", "hanako@sakura-boeki.example")
    assert email.subject == "見積もりのお願い"
    assert email.to == (ForwardedAddress(None, "sales@ourcrm.example"),)
    assert email.body == "よろしくお願いします。"


NESTED = """\
Forwarding the whole chain.

---------- Forwarded message ---------
From: Ana Silva <ana@cortica.example>
Date: Wed, 3 Jul 2024 at 09:00
Subject: Fwd: Cork samples
To: buyer@ourcrm.example

See Rui's note below.

---------- Forwarded message ---------
From: Rui Costa <rui@cortica.example>
Date: Tue, 2 Jul 2024 at 18:00
Subject: Cork samples
To: Ana Silva <ana@cortica.example>

Samples ship Friday.
"""


def test_nested_forwards_return_the_outermost_and_keep_the_rest_as_body() -> None:
    result = parse_forwarded(NESTED, "Fwd: Fwd: Cork samples")
    email = _email(result)
    assert result.message == "Forwarding the whole chain."
    assert email.from_ == ForwardedAddress("Ana Silva", "ana@cortica.example")
    assert email.subject == "Fwd: Cork samples"
    assert email.body is not None
    assert email.body.startswith("See Rui's note below.\n\n---------- Forwarded message ---------\nFrom: Rui Costa")
    assert email.body.endswith("Samples ship Friday.")


COMMA_NAMES = """\
________________________________
From: Okafor, Chidi <chidi.okafor@lagos-agro.example>
Sent: Friday, July 5, 2024 16:40
To: "Nwosu, Ada" <ada@ourcrm.example>, Bello, Tunde<tunde@ourcrm.example>, desk@ourcrm.example
Subject: Cocoa contract

Draft attached.
"""


def test_commas_inside_names_do_not_split_mailboxes() -> None:
    email = _email(parse_forwarded(COMMA_NAMES))
    assert email.from_ == ForwardedAddress("Okafor, Chidi", "chidi.okafor@lagos-agro.example")
    assert email.to == (
        ForwardedAddress("Nwosu, Ada", "ada@ourcrm.example"),
        ForwardedAddress("Bello, Tunde", "tunde@ourcrm.example"),
        ForwardedAddress(None, "desk@ourcrm.example"),
    )


MAILTO_NAMES = """\
FYI

*From:* Ingrid Berg<mailto:ingrid@fjord-fisk.example> <ingrid@fjord-fisk.example<mailto:ingrid@fjord-fisk.example>> on behalf of post@fjord-fisk.example<mailto:post@fjord-fisk.example>
*Sent:* Monday, July 8, 2024 07:55
*To:* sales@ourcrm.example<mailto:sales@ourcrm.example>
*Cc:* Nils Dahl [mailto:nils@fjord-fisk.example]
*Subject:* Salmon prices

Prices attached.
"""  # noqa: E501 - the From line is long on purpose, as Outlook writes it


def test_mailto_link_annotations_and_on_behalf_of() -> None:
    result = parse_forwarded(MAILTO_NAMES, "FW: Salmon prices")
    email = _email(result)
    assert result.message == "FYI"
    assert email.from_ == ForwardedAddress("Ingrid Berg", "ingrid@fjord-fisk.example")
    assert email.to == (ForwardedAddress(None, "sales@ourcrm.example"),)
    assert email.cc == (ForwardedAddress("Nils Dahl", "nils@fjord-fisk.example"),)
    assert email.body == "Prices attached."


@pytest.mark.parametrize(
    "body",
    [
        "Sounds good!\n\nOn Mon, Jul 1, 2024 at 10:00 AM Ravi Shah <ravi@example.org> wrote:\n> Shall we meet?\n",
        "Thanks.\n\nLe lun. 1 juil. 2024 à 10:00, Claire <claire@example.fr> a écrit :\n> On se voit ?\n",
        "Just a note with no forward at all.\nFrom: my phone\n",
        "",
    ],
)
def test_replies_and_plain_mail_are_not_forwards(body: str) -> None:
    result = parse_forwarded(body)
    assert result == ForwardParse(forwarded=False, message=None, email=None, confidence=0.0)


def test_forward_subject_without_a_readable_forward() -> None:
    result = parse_forwarded("See the attached message.", "Fwd: Invoice 77")
    assert result.forwarded
    assert result.email is None
    assert result.confidence < 0.5


def test_confidence_is_higher_for_a_banner_than_for_an_ambiguous_rule() -> None:
    banner = parse_forwarded(GMAIL_EN, "Fwd: Container pricing for Q3")
    rule = parse_forwarded(COMMA_NAMES)
    assert 0.0 < rule.confidence < banner.confidence <= 1.0


def test_outlook_original_message_separator() -> None:
    body = (
        "Please handle.\n\n-----Original Message-----\nFrom: Dana Levi [mailto:dana@negev-solar.example]\n"
        "Sent: Tuesday, July 9, 2024 8:30 AM\nTo: info@ourcrm.example\nSubject: Panels\n\nHow much for 20?\n"
    )
    result = parse_forwarded(body, "FW: Panels")
    email = _email(result)
    assert result.message == "Please handle."
    assert email.from_ == ForwardedAddress("Dana Levi", "dana@negev-solar.example")
    assert email.body == "How much for 20?"


@settings(max_examples=200, deadline=None)
@given(
    body=st.text(alphabet=st.sampled_from(list("ab @<>:;,\"'\n\r\t->_*[]()Fromt")), max_size=400),
    subject=st.one_of(st.none(), st.sampled_from(["Fwd: x", "Re: x", "x", ""])),
)
def test_never_raises_and_stays_consistent(body: str, subject: str | None) -> None:
    result = parse_forwarded(body, subject)
    assert 0.0 <= result.confidence <= 1.0
    if not result.forwarded:
        assert result.email is None
        assert result.message is None
