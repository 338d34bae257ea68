"""Unit tests for services.matcher.mail.quotes, on fixtures written for this project."""

from __future__ import annotations

import pytest

from services.matcher.mail.quotes import extract_new_text, html_to_text

REPLY = "Thanks, the invoice is paid.\nSee you Monday."

# (id, body) - every body's new text is REPLY.
TOP_POSTED = [
    (
        "gmail-en",
        f"{REPLY}\n\nOn Mon, Jan 8, 2024 at 10:02 AM Ana Silva <ana@acme.test> wrote:\n\n"
        "> Could you check the invoice?\n>\n> Ana\n",
    ),
    (
        "gmail-en-wrapped-address",
        f"{REPLY}\n\nOn Mon, Jan 8, 2024 at 10:02 AM Ana Silva from Accounts <\n"
        "ana@acme.test> wrote:\n\n> Could you check the invoice?\n",
    ),
    (
        "apple-mail-fr",
        f"{REPLY}\n\nLe 8 janv. 2024 à 10:02, Ana Silva <ana@acme.test> a écrit :\n\n"
        "> Pourriez-vous vérifier la facture ?\n",
    ),
    (
        "thunderbird-de",
        f"{REPLY}\n\nAm 08.01.24 um 10:02 schrieb Ana Silva:\n> Können Sie die Rechnung prüfen?\n",
    ),
    (
        "gmail-de-verb-in-middle",
        f"{REPLY}\n\nAna Silva <ana@acme.test> schrieb am Mo., 8. Jan. 2024\num 10:02 Uhr:\n\n"
        "> Können Sie die Rechnung prüfen?\n",
    ),
    (
        "gmail-es",
        f"{REPLY}\n\nEl lun, 8 ene 2024 a las 10:02, Ana Silva (<ana@acme.test>)\nescribió:\n\n"
        "> ¿Puede revisar la factura?\n",
    ),
    (
        "gmail-pt",
        f"{REPLY}\n\nEm seg., 8 de jan. de 2024 às 10:02, Ana Silva <ana@acme.test> escreveu:\n\n"
        "> Pode verificar a fatura?\n",
    ),
    (
        "gmail-it",
        f"{REPLY}\n\nIl giorno lun 8 gen 2024 alle ore 10:02 Ana Silva <ana@acme.test> ha scritto:\n\n"
        "> Può controllare la fattura?\n",
    ),
    (
        "gmail-nl",
        f"{REPLY}\n\nOp ma 8 jan 2024 om 10:02 schreef Ana Silva <ana@acme.test>:\n\n"
        "> Kunt u de factuur controleren?\n",
    ),
    (
        "gmail-sv",
        f"{REPLY}\n\nDen mån 8 jan. 2024 kl 10:02 skrev Ana Silva <ana@acme.test>:\n\n> Kan du kolla fakturan?\n",
    ),
    (
        "gmail-pl",
        f"{REPLY}\n\npon., 8 sty 2024 o 10:02 Ana Silva <ana@acme.test> napisał(a):\n\n"
        "> Czy może Pan sprawdzić fakturę?\n",
    ),
    (
        "gmail-ru-no-verb",
        f"{REPLY}\n\nпн, 8 янв. 2024 г. в 10:02, Ана Силва <ana@acme.test>:\n\n> Проверьте, пожалуйста, счёт.\n",
    ),
    (
        "gmail-zh",
        f"{REPLY}\n\nAna Silva <ana@acme.test> 于2024年1月8日周一 10:02写道：\n\n> 请检查发票。\n",
    ),
    (
        "gmail-ja-no-verb",
        f"{REPLY}\n\n2024年1月8日(月) 10:02 Ana Silva <ana@acme.test>:\n\n> 請求書を確認してください。\n",
    ),
    (
        "gmail-he-bidi-marks",
        f"{REPLY}\n\n\u202bבתאריך יום ב׳, 8 בינו׳ 2024 ב-10:02 מאת \u202aAna Silva\u202c\u200f "
        "<\u202aana@acme.test\u202c\u200f>:\u202c\n\n> נא לבדוק את החשבונית\n",
    ),
    (
        "outlook-en",
        f"{REPLY}\n\n________________________________\nFrom: Ana Silva <ana@acme.test>\n"
        "Sent: Monday, January 8, 2024 10:02 AM\nTo: Bo Berg <bo@corp.test>\n"
        "Subject: Invoice 2024-001\n\nCould you check the invoice?\n",
    ),
    (
        "outlook-fr-space-before-colon",
        f"{REPLY}\n\nDe : Ana Silva <ana@acme.test>\nEnvoyé : lundi 8 janvier 2024 10:02\n"
        "À : Bo Berg <bo@corp.test>\nObjet : Facture 2024-001\n\nPourriez-vous vérifier ?\n",
    ),
    (
        "outlook-de-original-message",
        f"{REPLY}\n\n-----Ursprüngliche Nachricht-----\nVon: Ana Silva <ana@acme.test>\n"
        "Gesendet: Montag, 8. Januar 2024 10:02\nAn: Bo Berg\nBetreff: Rechnung\n\n"
        "Können Sie die Rechnung prüfen?\n",
    ),
    (
        "outlook-es",
        f"{REPLY}\n\nDe: Ana Silva <ana@acme.test>\nEnviado el: lunes, 8 de enero de 2024 10:02\n"
        "Para: Bo Berg\nAsunto: Factura\n\n¿Puede revisar la factura?\n",
    ),
    (
        "outlook-ja",
        f"{REPLY}\n\n差出人: Ana Silva <ana@acme.test>\n送信日時: 2024年1月8日 10:02\n"
        "宛先: Bo Berg\n件名: 請求書\n\n請求書を確認してください。\n",
    ),
    (
        "outlook-wrapped-from",
        f"{REPLY}\n\nFrom: Accounts Payable Department of Acme Holdings\n"
        "<ana@acme.test>\nSent: Monday, January 8, 2024 10:02 AM\nTo: Bo Berg\n"
        "Subject: Invoice\n\nCould you check the invoice?\n",
    ),
    (
        "yahoo-original-message",
        f"{REPLY}\n\n\n----- Original Message -----\nFrom: Ana Silva <ana@acme.test>\n"
        "To: bo@corp.test\nSent: Monday, January 8, 2024 10:02 AM\nSubject: Invoice\n\nHi\n",
    ),
    (
        "gmail-forward",
        f"{REPLY}\n\n---------- Forwarded message ---------\nFrom: Ana Silva <ana@acme.test>\n"
        "Date: Mon, Jan 8, 2024 at 10:02 AM\nSubject: Invoice\nTo: <bo@corp.test>\n\nHi\n",
    ),
    (
        "quoted-hotmail-headers",
        f"{REPLY}\n\n> Subject: Invoice\n> From: ana@acme.test\n> Date: Mon, 8 Jan 2024 10:02:00\n>\n> Hi\n",
    ),
    (
        "iphone-signature-then-attribution",
        f"{REPLY}\n\nSent from my iPhone\n\nOn 8 Jan 2024, at 10:02, Ana Silva <ana@acme.test> wrote:\n\n"
        "> Could you check the invoice?\n",
    ),
    (
        "dash-signature",
        f"{REPLY}\n\n-- \nBo Berg\nHead of Finance, Corp\n+46 8 123 456\n",
    ),
    (
        "device-signature-fr",
        f"{REPLY}\n\nEnvoyé de mon iPhone\n",
    ),
    (
        "device-signature-de",
        f"{REPLY}\n\nVon meinem iPhone gesendet\n",
    ),
    (
        "outlook-mobile",
        f"{REPLY}\n\nGet Outlook for Android<https://aka.ms/ghei36>\n"
        "________________________________\nFrom: Ana Silva <ana@acme.test>\n"
        "Sent: Monday, January 8, 2024 10:02:00 AM\nTo: Bo Berg <bo@corp.test>\n"
        "Subject: Invoice\n\nHi\n",
    ),
    (
        "mailing-list-footer",
        f"{REPLY}\n\n_______________________________________________\nfinance mailing list\n"
        "finance@lists.corp.test\nhttps://lists.corp.test/listinfo/finance\n",
    ),
    (
        "crlf-line-endings",
        (f"{REPLY}\n\nOn Mon, Jan 8, 2024 at 10:02 AM Ana <ana@acme.test> wrote:\n> Hi\n").replace("\n", "\r\n"),
    ),
]


@pytest.mark.parametrize("body", [body for _, body in TOP_POSTED], ids=[name for name, _ in TOP_POSTED])
def test_top_posted_reply_keeps_only_new_text(body: str) -> None:
    assert extract_new_text(body) == REPLY


def test_bottom_posted_reply_drops_leading_history() -> None:
    body = "On 01/08/2024 10:02 AM, Ana Silva wrote:\n> Could you check the invoice?\n>\n\nDone, it is paid.\n"
    assert extract_new_text(body) == "Done, it is paid."


def test_interleaved_answers_keep_their_quoted_context() -> None:
    body = (
        "Answers below.\n\n"
        "On Mon, Jan 8, 2024 at 10:02 AM Ana Silva <ana@acme.test> wrote:\n"
        "> Is the invoice paid?\n\nYes, yesterday.\n\n"
        "> And the credit note?\n\nStill pending.\n\n-- \nBo\n"
    )
    assert extract_new_text(body) == (
        "Answers below.\n\n> Is the invoice paid?\n\nYes, yesterday.\n\n> And the credit note?\n\nStill pending."
    )


def test_attribution_wrapped_over_several_lines_is_removed_whole() -> None:
    body = "Agreed.\n\nOn Mon, Jan 8, 2024 at 10:02 AM, Ana Silva\n<ana@acme.test>\nwrote:\n\n> Shall we?\n"
    assert extract_new_text(body) == "Agreed."


def test_hard_wrapped_quote_tail_is_not_an_answer() -> None:
    body = (
        "Fine by me.\n\nOn Mon, Jan 8, 2024 at 10:02 AM Ana <ana@acme.test> wrote:\n"
        "> We would like to move the delivery of the second batch to the week\n"
        "after next.\n> Regards, Ana\n"
    )
    assert extract_new_text(body) == "Fine by me."


def test_text_that_merely_looks_like_headers_is_kept() -> None:
    body = (
        "On the other hand, the old contract said:\n"
        "On average we pay within 10 days.\n\n"
        "The parcel was sent from my office, not Sent from my iPhone.\n"
        "Data comes from: our ERP, not from: the shop.\n\n"
        "## Totals\n----\n\n1. 2024-01-15 14:30:25\n2. 15.01.2024 14:30\n"
    )
    assert extract_new_text(body) == body.rstrip("\n")


def test_quote_only_message_keeps_the_quote() -> None:
    assert extract_new_text("> Only a quote here.\n") == "> Only a quote here."


def test_surrounding_blank_lines_and_trailing_spaces_are_trimmed() -> None:
    assert extract_new_text("\n\n  Indented first line   \nsecond\t\n\n\n") == "  Indented first line\nsecond"


def test_empty_input() -> None:
    assert extract_new_text("") == ""
    assert extract_new_text("\n \n") == ""


def test_html_gmail_reply() -> None:
    html = (
        '<div dir="ltr">Thanks,&nbsp;the invoice is paid.<br>See you Monday.</div><br>'
        '<div class="gmail_quote"><div class="gmail_attr">On Mon, Jan 8, 2024 at 10:02 AM '
        'Ana Silva &lt;<a href="mailto:ana@acme.test">ana@acme.test</a>&gt; wrote:<br></div>'
        '<blockquote class="gmail_quote">Could you check the invoice?<br>'
        "<blockquote>Older message</blockquote></blockquote></div>"
    )
    text = html_to_text(html)
    assert "> Could you check the invoice?" in text
    assert "> > Older message" in text
    assert extract_new_text(text) == REPLY


def test_html_outlook_reply() -> None:
    html = (
        "<html><head><style>p.MsoNormal {margin:0cm}</style><title>x</title></head><body>"
        '<p class="MsoNormal">Thanks, the invoice is paid.</p>'
        '<p class="MsoNormal">See you Monday.</p><p class="MsoNormal">&nbsp;</p>'
        '<div style="border-top:solid #E1E1E1 1.0pt"><p class="MsoNormal"><b>From:</b> '
        "Ana Silva &lt;ana@acme.test&gt;<br><b>Sent:</b> Monday, January 8, 2024 10:02 AM<br>"
        "<b>To:</b> Bo Berg<br><b>Subject:</b> Invoice</p></div>"
        '<p class="MsoNormal">Could you check the invoice?</p>'
        "<script>alert('x')</script></body></html>"
    )
    text = html_to_text(html)
    assert "p.MsoNormal" not in text
    assert "alert" not in text
    assert extract_new_text(text) == REPLY


def test_html_to_text_decodes_entities_and_keeps_pre() -> None:
    html = "<p>a &amp; b &lt;c&gt; &#8364;5</p><pre>x  = 1\n  y = 2</pre><ul><li>one</li><li>two</li></ul>"
    assert html_to_text(html) == "a & b <c> €5\nx  = 1\n  y = 2\n- one\n- two"


# Each line below is recognised by its last characters, which the parser checks before its regexes.
SIGNATURES_AND_ATTRIBUTIONS_BY_THEIR_END = [
    ("device-signature-tr", f"{REPLY}\n\niPhone'umdan gönderildi\n"),
    ("device-signature-tr-upper-dotted-i", f"{REPLY}\n\nİPHONE'UMDAN GÖNDERİLDİ\n"),
    ("device-signature-ja", f"{REPLY}\n\niPhoneから送信\n"),
    ("device-signature-ko", f"{REPLY}\n\nGalaxy에서 보냄\n"),
    ("device-signature-zh", f"{REPLY}\n\n从我的iPhone发送\n"),
    (
        "attribution-ending-in-a-parenthesis",
        f"{REPLY}\n\nW dniu 8.01.2024 o 10:02, Ana Silva <ana@acme.test> napisał(a):\n> Sprawdzisz fakturę?\n",
    ),
    (
        "attribution-verb-without-colon",
        f"{REPLY}\n\nOn Mon, Jan 8, 2024 at 10:02 AM Ana Silva <ana@acme.test> wrote\n> Could you check it?\n",
    ),
    (
        "header-block-with-full-width-colons",
        f"{REPLY}\n\n差出人：Ana Silva <ana@acme.test>\n送信日時：2024年1月8日 10:02\n宛先：Bo Berg\n"
        "件名：請求書\n\nこんにちは\n",
    ),
]


@pytest.mark.parametrize(
    "body",
    [body for _, body in SIGNATURES_AND_ATTRIBUTIONS_BY_THEIR_END],
    ids=[name for name, _ in SIGNATURES_AND_ATTRIBUTIONS_BY_THEIR_END],
)
def test_lines_recognised_by_how_they_end_are_removed(body: str) -> None:
    assert extract_new_text(body) == REPLY


def test_text_lines_ending_like_a_verb_or_holding_a_colon_are_kept() -> None:
    body = "We wrote\nthe plan: ship on Friday.\nSent the draft to Ana, she wrote back."
    assert extract_new_text(body) == body
