"""Subjects as thread keys: the prefixes and banners real clients and gateways add, and subjects too generic to use."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.matcher.mail.subjects import normalize_subject, subject_key


@pytest.mark.parametrize(
    "subject",
    [
        "Angebot Q3",
        "Re: Angebot Q3",
        "RE: RE: Angebot Q3",
        "AW: Angebot Q3",
        "WG: AW: Angebot Q3",
        "Fwd: Re: Angebot Q3",
        "FW: Angebot Q3",
        "SV: VS: Antw: Odp: Angebot Q3",
        "RE[2]: Angebot Q3",
        "Re^2: Angebot Q3",
        "Re(3): Angebot Q3",
        "Re : Angebot Q3",  # French typography
        "re:angebot q3",
        "  Re:   Angebot\t Q3  ",
        "[EXT] Re: Angebot Q3",
        "RE: [External] Angebot Q3",
        "[EXTERNAL EMAIL] Angebot Q3",
        "*EXTERNAL* RE: Angebot Q3",
        "Fwd: [Fwd: Angebot Q3]",
        "Angebot Q3 (fwd)",
        "回复：Angebot Q3",
        "转发: Angebot Q3",
        "Отв: Angebot Q3",
        "R: I: Angebot Q3",
        "TR: RV: ENC: Angebot Q3",
        "İLT: YNT: Angebot Q3",
        "ＲＥ： Angebot Q3",  # full-width, as some CJK clients write it
    ],
)
def test_reply_and_forward_prefixes_are_stripped(subject: str) -> None:
    assert normalize_subject(subject) == "angebot q3"
    assert subject_key(subject) == "angebot q3"


@pytest.mark.parametrize(
    "subject",
    [
        "[sales] Angebot",
        "Re: [sales] Angebot",
        "[sales] Re: Angebot",
        "Re: [sales] AW: [sales] Angebot",
        "[SALES] Angebot",
    ],
)
def test_list_tags_are_kept_wherever_the_prefixes_put_them(subject: str) -> None:
    assert normalize_subject(subject) == "[sales] angebot"


def test_list_tags_tell_two_lists_apart() -> None:
    assert subject_key("[sales] Meeting notes") != subject_key("[support] Meeting notes")
    assert subject_key("[PATCH v2] fix the parser") != subject_key("[PATCH] fix the parser")


@pytest.mark.parametrize(
    "subject",
    [None, "", "   ", "Re:", "Fwd: ", "hi", "Re: Hi", "Hello!", "hello there", "Question", "RE: question?", "FYI",
     "(no subject)", "[sales] hi", "ok", "Re: ..."],
)  # fmt: skip
def test_generic_subjects_are_not_keys(subject: str | None) -> None:
    assert subject_key(subject) is None


def test_words_that_only_start_like_a_prefix_are_kept() -> None:
    assert normalize_subject("Rest of the order") == "rest of the order"
    assert normalize_subject("Information about our renewal") == "information about our renewal"
    assert normalize_subject("Trade show: booth plan") == "trade show: booth plan"
    assert normalize_subject("Resume: Jane Doe") == "resume: jane doe"


def test_a_changed_subject_is_another_key() -> None:
    assert subject_key("Re: Angebot Q3") != subject_key("Angebot Q3 - revised")


_PREFIXES = st.sampled_from(["Re: ", "RE: ", "AW: ", "Fwd: ", "FW: ", "SV: ", "Antw: ", "[EXT] ", "RE[2]: ", "回复: "])
_SUBJECTS = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=40)


@settings(max_examples=200, deadline=None)
@given(prefixes=st.lists(_PREFIXES, max_size=4), subject=_SUBJECTS)
def test_any_stack_of_prefixes_gives_the_same_key(prefixes: list[str], subject: str) -> None:
    assert normalize_subject("".join(prefixes) + "Renewal " + subject) == normalize_subject("Renewal " + subject)


@settings(max_examples=200, deadline=None)
@given(subject=_SUBJECTS)
def test_normalizing_twice_changes_nothing(subject: str) -> None:
    once = normalize_subject(subject)
    assert normalize_subject(once) == once
