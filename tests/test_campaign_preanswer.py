"""Pre-answer classification: hangup causes, SIP codes, operator announcements and early-media tones."""

from __future__ import annotations

import numpy as np
import pytest

from tests.campaign_signals import RATE, add_noise, babble, cadence, frames, silence, tone
from voicebot.campaign.earlymedia import EarlyKind, EarlyMedia, EarlyMediaDetector, SitCode
from voicebot.campaign.model import CATALOGUE
from voicebot.campaign.preanswer import (
    CAUSES,
    Q850,
    Evidence,
    classify_announcement,
    classify_cause,
    classify_sip,
    preanswer_disposition,
)
from voicebot.campaign.tones import GoertzelBank, goertzel_recurrence

# ----------------------------------------------------------------- causes: one row each, written from the Q.850 list

CAUSE_ROWS = [
    ("UNALLOCATED_NUMBER", "invalid_number"), ("NO_ROUTE_TRANSIT_NET", "network_error"),
    ("NO_ROUTE_DESTINATION", "network_error"), ("CHANNEL_UNACCEPTABLE", "network_error"),
    ("NORMAL_CLEARING", "no_answer"), ("USER_BUSY", "busy"), ("NO_USER_RESPONSE", "no_answer"),
    ("NO_ANSWER", "no_answer"), ("SUBSCRIBER_ABSENT", "switched_off"), ("CALL_REJECTED", "rejected"),
    ("NUMBER_CHANGED", "invalid_number"), ("REDIRECTION_TO_NEW_DESTINATION", "network_error"),
    ("EXCHANGE_ROUTING_ERROR", "network_error"), ("DESTINATION_OUT_OF_ORDER", "network_error"),
    ("INVALID_NUMBER_FORMAT", "invalid_number"), ("FACILITY_REJECTED", "network_error"),
    ("RESPONSE_TO_STATUS_ENQUIRY", "network_error"), ("NORMAL_UNSPECIFIED", "network_error"),
    ("NORMAL_CIRCUIT_CONGESTION", "network_error"), ("NETWORK_OUT_OF_ORDER", "network_error"),
    ("NORMAL_TEMPORARY_FAILURE", "network_error"), ("SWITCH_CONGESTION", "network_error"),
    ("ACCESS_INFO_DISCARDED", "network_error"), ("REQUESTED_CHAN_UNAVAIL", "network_error"),
    ("PRE_EMPTED", "network_error"), ("FACILITY_NOT_SUBSCRIBED", "network_error"),
    ("OUTGOING_CALL_BARRED", "network_error"), ("INCOMING_CALL_BARRED", "rejected"),
    ("BEARERCAPABILITY_NOTAUTH", "network_error"), ("BEARERCAPABILITY_NOTAVAIL", "network_error"),
    ("SERVICE_UNAVAILABLE", "network_error"), ("BEARERCAPABILITY_NOTIMPL", "network_error"),
    ("CHAN_NOT_IMPLEMENTED", "network_error"), ("FACILITY_NOT_IMPLEMENTED", "network_error"),
    ("SERVICE_NOT_IMPLEMENTED", "network_error"), ("INVALID_CALL_REFERENCE", "network_error"),
    ("INCOMPATIBLE_DESTINATION", "network_error"), ("INVALID_MSG_UNSPECIFIED", "network_error"),
    ("MANDATORY_IE_MISSING", "network_error"), ("MESSAGE_TYPE_NONEXIST", "network_error"),
    ("WRONG_MESSAGE", "network_error"), ("IE_NONEXIST", "network_error"), ("INVALID_IE_CONTENTS", "network_error"),
    ("WRONG_CALL_STATE", "network_error"), ("RECOVERY_ON_TIMER_EXPIRE", "no_answer"),
    ("MANDATORY_IE_LENGTH_ERROR", "network_error"), ("PROTOCOL_ERROR", "network_error"),
    ("INTERWORKING", "network_error"), ("ORIGINATOR_CANCEL", "network_error"), ("ALLOTTED_TIMEOUT", "no_answer"),
    ("PROGRESS_TIMEOUT", "network_error"), ("USER_NOT_REGISTERED", "switched_off"), ("GATEWAY_DOWN", "network_error"),
    ("MEDIA_TIMEOUT", "network_error"), ("LOSE_RACE", "network_error"), ("MANAGER_REQUEST", "network_error"),
    ("SYSTEM_SHUTDOWN", "network_error"), ("CRASH", "network_error"),
]


@pytest.mark.parametrize(("cause", "expected"), CAUSE_ROWS)
def test_each_cause_maps_to_its_disposition(cause: str, expected: str) -> None:
    assert classify_cause(cause) == expected
    assert classify_cause(cause.lower()) == expected


def test_the_table_and_the_rows_agree_and_name_real_dispositions() -> None:
    assert {c for c, _ in CAUSE_ROWS} == set(CAUSES)
    assert set(CAUSES.values()) <= set(CATALOGUE)


@pytest.mark.parametrize(("value", "expected"), [("17", "busy"), ("1", "invalid_number"), ("21", "rejected"),
                                                 ("20", "switched_off"), ("41", "network_error"), ("19", "no_answer")])
def test_numeric_q850_values(value: str, expected: str) -> None:
    assert classify_cause(value) == expected
    assert Q850[int(value)][1] == expected


def test_originator_cancel_is_no_answer_only_at_the_ring_timeout() -> None:
    assert classify_cause("ORIGINATOR_CANCEL", rang_s=30.0, ring_timeout_s=30.0) == "no_answer"
    assert classify_cause("ORIGINATOR_CANCEL", rang_s=4.0, ring_timeout_s=30.0) == "network_error"


def test_unknown_causes_are_retryable_network_errors() -> None:
    assert classify_cause("SOMETHING_NEW") == "network_error"
    assert classify_cause("999") == "network_error"


SIP_ROWS = [(486, "busy"), (600, "busy"), (480, "no_answer"), (408, "no_answer"), (487, "no_answer"),
            (603, "rejected"), (403, "rejected"), (607, "rejected"), (608, "rejected"), (404, "invalid_number"),
            (604, "invalid_number"), (410, "invalid_number"), (484, "invalid_number"), (485, "invalid_number"),
            (401, "network_error"), (407, "network_error"), (500, "network_error"), (502, "network_error"),
            (503, "network_error"), (504, "network_error"), (488, "network_error"), (599, "network_error")]


@pytest.mark.parametrize(("code", "expected"), SIP_ROWS)
def test_each_sip_code_maps_to_its_disposition(code: int, expected: str) -> None:
    assert classify_sip(code) == expected


def test_non_failures_are_not_classified() -> None:
    assert classify_sip(200) is None and classify_sip(183) is None and classify_sip(302) is None


# ----------------------------------------------------------------- announcements

ANNOUNCEMENT_ROWS = [
    ("The number you have dialed is not in service.", "invalid_number"),
    ("We're sorry, the number you have dialled has been disconnected.", "invalid_number"),
    ("Your call cannot be completed as dialed. Please check the number and dial again.", "invalid_number"),
    ("the number you have dialed is not in service please try again later", "invalid_number"),
    ("The subscriber you have dialed is not available.", "switched_off"),
    ("The mobile phone you are calling is switched off.", "switched_off"),
    ("The number you dialed is out of the coverage area.", "switched_off"),
    ("The subscriber you dialed is busy, please call again later.", "busy"),
    ("All circuits are busy now. Please try your call again later.", "network_error"),
    ("您拨打的电话已关机", "switched_off"),
    ("您拨打的号码是空号,请查证后再拨", "invalid_number"),
    ("您 拨打 的 号码 是 空号", "invalid_number"),
    ("您拨打的电话暂时无法接通,请稍后再拨", "switched_off"),
    ("您拨打的电话无法接通", "switched_off"),
    ("您拨打的电话已停机", "invalid_number"),
    ("您拨打的用户不在服务区", "switched_off"),
    ("您拨打的电话正在通话中,请稍后再拨", "busy"),
    ("网络忙,请稍后再拨", "network_error"),
]


@pytest.mark.parametrize(("text", "expected"), ANNOUNCEMENT_ROWS)
def test_announcements_are_classified(text: str, expected: str) -> None:
    assert classify_announcement(text) == expected


@pytest.mark.parametrize("text", ["hello?", "please hold while we connect your call", "", "喂,你好", "notinservice"])
def test_other_words_are_not_an_announcement(text: str) -> None:
    assert classify_announcement(text) is None


def test_the_words_beat_the_carrier_cause_and_the_cause_is_the_last_resort() -> None:
    vacant = preanswer_disposition("NORMAL_TEMPORARY_FAILURE", 503, announcement="您拨打的号码是空号")
    assert (vacant.disposition, vacant.evidence) == ("invalid_number", Evidence.ANNOUNCEMENT)
    sit = preanswer_disposition("NORMAL_CLEARING", early=EarlyMedia(EarlyKind.SIT, 1.0, SitCode.IC))
    assert (sit.disposition, sit.evidence) == ("invalid_number", Evidence.SIT)
    busy = preanswer_disposition("NORMAL_CLEARING", early=EarlyMedia(EarlyKind.BUSY, 1.0))
    assert (busy.disposition, busy.evidence) == ("busy", Evidence.TONE)
    by_sip = preanswer_disposition("NORMAL_TEMPORARY_FAILURE", 486, announcement="music on hold")
    assert (by_sip.disposition, by_sip.evidence) == ("busy", Evidence.SIP)
    by_cause = preanswer_disposition("SUBSCRIBER_ABSENT", early=EarlyMedia(EarlyKind.RINGBACK, 1.0))
    assert (by_cause.disposition, by_cause.evidence) == ("switched_off", Evidence.CAUSE)


# ----------------------------------------------------------------- Goertzel

@pytest.mark.parametrize("freq", [440.0, 913.8, 1776.7])
def test_the_bank_equals_the_recurrence(freq: float) -> None:
    x = add_noise(tone([freq], 40), 10)
    bank = GoertzelBank([freq, 1000.0], len(x))
    assert bank.powers(x)[0] == pytest.approx(goertzel_recurrence(x, freq), rel=1e-9)
    assert bank.powers(x)[1] == pytest.approx(goertzel_recurrence(x, 1000.0), rel=1e-9)


def test_fractions_read_one_for_a_pure_tone_and_little_for_others() -> None:
    bank = GoertzelBank([425.0, 1370.6], 320)
    pure = bank.fractions(tone([425.0], 40))
    assert pure[0] == pytest.approx(1.0, abs=0.03) and pure[1] < 0.01
    assert bank.fractions(np.zeros(320)).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="320 samples"):
        bank.powers(np.zeros(100))


# ----------------------------------------------------------------- early media

def classify(x: np.ndarray) -> list[EarlyMedia]:
    """Every change of the detector's classification over ``x``."""
    detector, seen = EarlyMediaDetector(), list[EarlyMedia]()
    for i, frame in enumerate(frames(x)):
        result = detector.feed(frame, (i + 1) * 0.02)
        if not seen or result.kind != seen[-1].kind:
            seen.append(result)
    return seen


def final(x: np.ndarray) -> EarlyMedia:
    return classify(x)[-1]


SIGNALS = {
    "us_ringback": (cadence([440, 480], 2000, 4000, 2), EarlyKind.RINGBACK, 1.5, 2.1),
    "eu_ringback": (cadence([425], 1000, 4000, 2), EarlyKind.RINGBACK, 0.8, 1.1),
    "cn_ringback": (cadence([450], 1000, 4000, 2), EarlyKind.RINGBACK, 0.8, 1.1),
    "us_busy": (cadence([480, 620], 500, 500, 4), EarlyKind.BUSY, 1.5, 2.2),
    "eu_busy": (cadence([425], 500, 500, 4), EarlyKind.BUSY, 1.5, 2.2),
    "cn_busy": (cadence([450], 350, 350, 4), EarlyKind.BUSY, 1.0, 1.6),
    "us_reorder": (cadence([480, 620], 250, 250, 4), EarlyKind.CONGESTION, 0.7, 1.2),
    "silence": (silence(3000), EarlyKind.SILENCE, 0.0, 0.1),
    "announcement": (np.concatenate((silence(300), babble(2500))), EarlyKind.SPEECH, 0.7, 1.2),
}


@pytest.mark.parametrize("name", sorted(SIGNALS))
@pytest.mark.parametrize("snr", [None, 20.0, 10.0])
def test_early_media_is_classified_clean_and_in_noise(name: str, snr: float | None) -> None:
    x, kind, earliest, latest = SIGNALS[name]
    if snr is not None:
        x = add_noise(x, snr, seed=len(name))
    result = final(x)
    assert result.kind == kind
    if kind != EarlyKind.SILENCE or snr is None:
        assert earliest <= result.at <= latest


def sit(first: float, first_ms: float, second: float, second_ms: float) -> np.ndarray:
    return np.concatenate((silence(200), tone([first], first_ms), tone([second], second_ms), tone([1776.7], 380),
                           silence(300), babble(1500)))


@pytest.mark.parametrize(("signal", "code"), [
    (sit(913.8, 274, 1370.6, 274), SitCode.IC), (sit(985.2, 380, 1370.6, 274), SitCode.VC),
    (sit(913.8, 380, 1370.6, 380), SitCode.NC), (sit(985.2, 274, 1370.6, 380), SitCode.RO),
    (sit(913.8, 380, 1428.5, 274), SitCode.OTHER)])
@pytest.mark.parametrize("snr", [None, 10.0])
def test_sit_tones_and_their_code(signal: np.ndarray, code: SitCode, snr: float | None) -> None:
    x = signal if snr is None else add_noise(signal, snr)
    result = final(x)
    assert (result.kind, result.sit) == (EarlyKind.SIT, code)  # the announcement after it does not undo it
    assert 1.1 <= result.at <= 1.5


def test_ringback_then_an_announcement_ends_as_speech() -> None:
    x = np.concatenate((cadence([450], 1000, 4000, 1), babble(2000)))
    kinds = [r.kind for r in classify(x)]
    assert EarlyKind.RINGBACK in kinds and kinds[-1] == EarlyKind.SPEECH


def test_speech_alone_is_not_a_tone_and_a_lone_beep_is_not_busy() -> None:
    assert final(babble(4000, seed=3)).kind == EarlyKind.SPEECH
    assert final(np.concatenate((tone([425], 500), silence(2000)))).kind == EarlyKind.SILENCE


def test_frames_of_the_wrong_size_are_refused() -> None:
    with pytest.raises(ValueError, match="160 samples"):
        EarlyMediaDetector().feed(np.zeros(RATE // 100), 0.01)
