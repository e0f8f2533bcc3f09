"""The GPIO pause button and capture LED, on gpiozero's mock pin factory."""

from __future__ import annotations

import asyncio
from typing import Iterator

import pytest

from agent.config import PrivacyConfig
from agent.errors import AgentError
from agent.privacy.gpio import GpioControls

gpiozero = pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory  # noqa: E402


@pytest.fixture
def mock_pins() -> Iterator[MockFactory]:
    previous = gpiozero.Device.pin_factory
    gpiozero.Device.pin_factory = MockFactory()
    try:
        yield gpiozero.Device.pin_factory
    finally:
        gpiozero.Device.pin_factory.reset()
        gpiozero.Device.pin_factory = previous


async def test_button_press_reaches_the_loop_and_led_follows_capturing(mock_pins: MockFactory) -> None:
    pressed = asyncio.Event()
    controls = GpioControls(PrivacyConfig(gpio_button_pin=17, gpio_led_pin=27), pressed.set)
    try:
        led = mock_pins.pin(27)
        assert led.state == 0
        mock_pins.pin(17).drive_low()  # the button pulls the pin low (pull-up)
        await asyncio.wait_for(pressed.wait(), 5)
        assert controls.presses == 1
        controls.capturing(True)
        assert led.state == 1
        controls.capturing(False)
        assert led.state == 0
    finally:
        controls.close()


async def test_a_pin_in_use_is_a_clear_error(mock_pins: MockFactory) -> None:
    first = GpioControls(PrivacyConfig(gpio_button_pin=17), lambda: None)
    try:
        with pytest.raises(AgentError, match="GPIO: cannot use pin"):
            GpioControls(PrivacyConfig(gpio_button_pin=17), lambda: None)
    finally:
        first.close()
