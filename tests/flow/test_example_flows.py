"""Each example flow in flows/ walked end to end through the engine alone, with scripted events."""

from __future__ import annotations

from ivr.flow.actions import Action, Classify, End, HttpRequest, Listen, Play, Transfer
from ivr.flow.events import (
    ClassificationResult,
    DigitTimeout,
    DtmfReceived,
    NoInput,
    PromptFinished,
    SpeechRecognized,
    TransferCompleted,
    TransferFailed,
    WebhookFailed,
    WebhookResult,
)
from ivr.flow.loader import load_library

from .helpers import FLOWS_DIR, Driver, only, played


def bank() -> Driver:
    return Driver(load_library(FLOWS_DIR / "bank.yaml"), BANK_API_TOKEN="tok-secret")


def keys(d: Driver, digits: str) -> list[Action]:
    out: list[Action] = []
    for key in digits:
        out += d.send(DtmfReceived(key))
    return out


def test_bank_happy_path() -> None:
    d = bank()
    assert only(d.start(caller_id="+15550100"), Play).audio == "bank-chime"
    assert played(d.send(PromptFinished())) == ["Thank you for calling First Example Bank."]
    actions = d.send(PromptFinished())
    assert only(actions, Listen).global_dtmf is False
    keys(d, "1200")  # '0' is data here: global DTMF intents are suspended
    assert d.engine.waiting_for == "input"
    keys(d, "3456")
    assert d.step == "ask_pin"
    actions = keys(d, "9876")
    verify = only(actions, HttpRequest)
    assert verify.json_body == {"account": "12003456", "pin": "9876", "caller": "+15550100"}
    assert verify.headers["Authorization"] == "Bearer tok-secret"
    assert "tok-secret" not in repr(verify)
    lookup = only(d.send(WebhookResult(200, {"ok": True})), HttpRequest)
    assert lookup.method == "GET"
    assert lookup.url == "https://bank.example.com/api/v1/accounts/12003456/balance"
    body = {"available": -12.5, "last_transaction": {"description": "Coffee Shop", "amount": 4.2}}
    assert played(d.send(WebhookResult(200, body))) == [
        "Your available balance is -12.50 dollars. Your account is overdrawn."
    ]
    d.send(PromptFinished())
    assert played(d.send(SpeechRecognized("my last transaction"))) == [
        "Your last transaction was Coffee Shop for 4.20 dollars."
    ]
    d.send(PromptFinished())
    d.send(DtmfReceived("9"))
    assert d.engine.variables["menu_choice"] == "goodbye"
    assert d.send(PromptFinished())[-1] == End("hangup", "normal")
    transcript = repr(d.engine.transcript)
    assert "9876" not in transcript
    assert "12003456" in transcript


def test_bank_wrong_pins_lock_and_transfer_with_account_variable() -> None:
    d = bank()
    d.start()
    d.send(PromptFinished())
    d.send(PromptFinished())
    d.send(SpeechRecognized("one two three four five six seven eight"))
    for attempt in range(3):
        keys(d, "0000")
        d.send(WebhookResult(200, {"ok": False}))
        if attempt < 2:
            assert d.step == "bad_pin"
            d.send(PromptFinished())
    assert d.step == "locked"
    d.send(PromptFinished())
    transfer = only(d.send(PromptFinished()), Transfer)
    assert transfer.endpoint == "PJSIP/agents"
    assert transfer.variables == {"IVR_ACCOUNT": "12345678"}
    assert d.send(TransferCompleted()) == [End("transferred", "transfer_agent")]


def test_bank_account_retries_exhausted_then_busy_agents() -> None:
    d = bank()
    d.start()
    d.send(PromptFinished())
    d.send(PromptFinished())
    assert played(d.send(NoInput())) == [
        "I didn't hear anything. Please enter your eight digit account number."
    ]
    assert played(d.send(NoInput())) == [
        "You can find your account number on your statement. Please enter it now."
    ]
    keys(d, "123")
    assert played(d.send(DigitTimeout())) == [
        "That wasn't eight digits. Please enter your account number again."
    ]
    d.send(SpeechRecognized("my dog ate it"))
    assert played(d.send(SpeechRecognized("no idea"))) == ["Please hold while I transfer you to an agent."]
    d.send(PromptFinished())
    assert played(d.send(TransferFailed("no_answer", 19))) == [
        "All of our agents are busy right now. Please call again later."
    ]


def test_bank_webhook_outage_goes_to_technical_difficulty() -> None:
    d = bank()
    d.start()
    d.send(PromptFinished())
    d.send(PromptFinished())
    keys(d, "12345678")
    keys(d, "1111")
    assert played(d.send(WebhookFailed("timeout"))) == [
        "We're having technical difficulties. Please try again later."
    ]


def pizza() -> Driver:
    return Driver(load_library(FLOWS_DIR / "pizza.yaml"), PIZZA_API_KEY="pz-key")


def test_pizza_order_end_to_end_with_subflow_confirmation_and_webhook() -> None:
    d = pizza()
    d.start(caller_id="+15550111")
    assert d.send(PromptFinished())
    assert d.step == "order_or_status"
    d.send(SpeechRecognized("I'd like to place an order"))
    assert d.step == "ask_size"
    d.send(SpeechRecognized("a family size please"))
    d.send(SpeechRecognized("hand tossed"))
    assert played(d.actions)[-1] == "How many family pizzas would you like?"
    d.send(SpeechRecognized("two"))
    d.send(SpeechRecognized("extra cheese on one of them"))
    assert d.engine.flow.name == "address"
    assert played(d.actions)[-1] == "Where should we deliver your order?"
    d.send(SpeechRecognized("12 Main Street"))
    d.send(SpeechRecognized("nine oh two one oh"))
    assert d.engine.flow.name == "pizza"
    assert played(d.actions)[-1] == (
        "That's 2 family classic crust pizzas, delivered to 12 Main Street. Shall I place the order?"
    )
    request = only(d.send(SpeechRecognized("yes please")), HttpRequest)
    assert request.filler == "Sending your order to the kitchen."
    assert request.json_body == {
        "phone": "+15550111",
        "items": [{"size": "family", "crust": "classic", "quantity": 2}],
        "notes": "extra cheese on one of them",
        "address": {"street": "12 Main Street", "zip": "90210", "complete": True},
    }
    assert played(d.send(WebhookResult(201, {"id": "A17", "eta_minutes": 35}))) == [
        "Your order number is A 1 7. It will be with you in about 35 minutes. Enjoy!"
    ]
    d.send(PromptFinished())
    assert d.send(PromptFinished())[-1] == End("hangup", "normal")


def test_pizza_llm_matcher_start_over_and_status() -> None:
    d = pizza()
    d.start()
    d.send(PromptFinished())
    classify = only(d.send(SpeechRecognized("hiya, I'm starving")), Classify)
    assert classify.model == "gpt-4o-mini"
    assert {o.name for o in classify.options} >= {"order", "status", "staff"}
    d.send(ClassificationResult("order"))
    d.send(DtmfReceived("4"))
    assert d.engine.variables["size"] == "family"
    d.send(SpeechRecognized("thin"))
    d.send(SpeechRecognized("one"))
    d.send(NoInput())  # notes: retries 0 -> straight to the address
    d.send(SpeechRecognized("1 Elm Road"))
    for key in "10001":
        d.send(DtmfReceived(key))
    assert played(d.actions)[-1].startswith("That's 1 family thin crust pizza,")
    d.send(DtmfReceived("2"))  # no -> start over
    assert played(d.send(PromptFinished())) == [
        "What size would you like? Small, medium, large, or family size."
    ]
    assert d.engine.variables["size"] == ""
    assert [r.kind for r in d.engine.path[-3:]] == ["say", "goto", "ask"]
    d2 = pizza()
    d2.start(caller_id="+1 555")
    d2.send(PromptFinished())
    request = only(d2.send(DtmfReceived("2")), HttpRequest)
    assert request.url == "https://pizza.example.com/api/orders/latest?phone=%2B1%20555"
    assert played(d2.send(WebhookResult(200, {"id": "B2", "status": "out for delivery"}))) == [
        "Your order B 2 is out for delivery."
    ]


def test_pizza_staff_intent_transfers_to_dialplan() -> None:
    d = pizza()
    d.start()
    d.send(PromptFinished())
    d.send(DtmfReceived("1"))
    transfer = only(d.send(SpeechRecognized("can I talk to a person")), Transfer)
    assert (transfer.context, transfer.extension, transfer.priority) == ("pizza-shop", "100", 1)
    assert transfer.variables == {"IVR_ORDER_SIZE": ""}


def reminder() -> Driver:
    return Driver(load_library(FLOWS_DIR / "reminder.yaml"), CLINIC_TOKEN="c-tok")


VARS = {"patient_name": "Ana", "appointment_id": "apt-9", "appointment_time": "on Monday at 10 am"}


def test_reminder_confirm() -> None:
    d = reminder()
    actions = d.start(direction="outbound", vars=VARS)
    assert played(actions) == [
        "Hello Ana, this is Example Clinic calling to remind you of your appointment on Monday at 10 am."
    ]
    assert only(actions, Play).barge_in is False
    assert only(d.send(PromptFinished()), Play).barge_in is True
    request = only(d.send(SpeechRecognized("yes I'll be there")), HttpRequest)
    assert request.url == "https://clinic.example.com/api/appointments/apt-9/confirm"
    assert played(d.send(WebhookResult(204))) == [
        "Thank you, your appointment is confirmed. See you on Monday at 10 am."
    ]
    assert d.send(PromptFinished())[-1] == End("hangup", "normal")


def test_reminder_reschedule() -> None:
    d = reminder()
    d.start(direction="outbound", vars=VARS)
    d.send(PromptFinished())
    d.send(DtmfReceived("2"))
    request = only(d.send(SpeechRecognized("after lunch would be better")), HttpRequest)
    assert request.json_body == {"preferred": "afternoon"}
    assert played(d.send(WebhookResult(200, {"time": "Tuesday at 3 pm"}))) == [
        "I've moved your appointment to Tuesday at 3 pm. We'll send you a text message with the details."
    ]
    d2 = reminder()
    d2.start(direction="outbound", vars=VARS)
    d2.send(PromptFinished())
    d2.send(SpeechRecognized("no"))
    d2.send(SpeechRecognized("morning"))
    assert played(d2.send(WebhookResult(200, {}))) == [
        "Please call Example Clinic at 5 5 5 0 1 0 0 to arrange a new time. Goodbye."
    ]


def test_reminder_nobody_answers_leaves_a_message() -> None:
    d = reminder()
    d.start(direction="outbound", vars=VARS)
    d.send(PromptFinished())
    d.send(NoInput())
    actions = d.send(NoInput())
    assert played(actions)[0].startswith("This is Example Clinic with a reminder about your appointment")
    assert d.send(PromptFinished())[-1] == End("hangup", "normal")
