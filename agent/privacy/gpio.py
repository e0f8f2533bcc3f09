"""An optional physical pause button and capture LED on the Pi's GPIO (``privacy.gpio_button_pin`` /
``gpio_led_pin``), with gpiozero.

The button toggles the privacy pause (press: pause; press again: resume; the pause also ends by itself
after ``privacy.max_pause_s``). The LED is lit while media may be sent to Hume: a visible "measuring" light
that does not depend on a screen. gpiozero is imported only when a pin is configured (the ``gpio`` extra;
on Raspberry Pi OS it drives the pins through ``python3-lgpio``); tests use its mock pin factory
(``GPIOZERO_PIN_FACTORY=mock``).

gpiozero calls ``when_pressed`` on its own thread; the press is handed to the event loop with
``call_soon_threadsafe``, so the pause logic stays single-threaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
from typing import Any, Callable, Optional

from agent.config import PrivacyConfig
from agent.errors import AgentError

_LOGGER = logging.getLogger(__name__)

BOUNCE_S = 0.05
"""Presses closer together than this are one press (a push button bounces for a few milliseconds)."""


class GpioControls:
    """The button and the LED; construct on the event loop, :meth:`close` at shutdown."""

    def __init__(self, cfg: PrivacyConfig, on_press: Optional[Callable[[], None]] = None) -> None:
        if importlib.util.find_spec("gpiozero") is None:
            raise AgentError(
                "privacy.gpio_button_pin / gpio_led_pin need the Python module 'gpiozero': "
                "pip install 'hume-edge-agent[gpio]' (and on Raspberry Pi OS: sudo apt install python3-lgpio)"
            )
        import gpiozero  # noqa: PLC0415 - optional extra, imported only when a pin is configured

        loop = asyncio.get_running_loop()
        self.on_press = on_press
        """Called on the loop at each press; the service sets it once the agent is composed."""
        self.presses = 0
        self._button: Optional[Any] = None
        self._led: Optional[Any] = None
        self._lit = False

        def pressed() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed while gpiozero's thread ran
                loop.call_soon_threadsafe(self._press)

        try:
            if cfg.gpio_button_pin >= 0:
                self._button = gpiozero.Button(cfg.gpio_button_pin, bounce_time=BOUNCE_S)
                self._button.when_pressed = pressed
            if cfg.gpio_led_pin >= 0:
                self._led = gpiozero.LED(cfg.gpio_led_pin)
                self._led.off()
        except gpiozero.GPIOZeroError as exc:
            self.close()
            raise AgentError(
                f"GPIO: cannot use pin(s) button={cfg.gpio_button_pin} led={cfg.gpio_led_pin}: {exc} "
                "(is this a Raspberry Pi with python3-lgpio, and is the pin free?)"
            ) from exc
        _LOGGER.info(
            "GPIO: pause button on pin %s, capture LED on pin %s", cfg.gpio_button_pin, cfg.gpio_led_pin
        )

    def _press(self) -> None:
        self.presses += 1
        if self.on_press is not None:
            self.on_press()

    def capturing(self, on: bool) -> None:
        """Light the LED while media may be sent; off otherwise."""
        if self._led is not None and on != self._lit:
            self._led.value = on
        self._lit = on

    def close(self) -> None:
        for device in (self._button, self._led):
            if device is not None:
                with contextlib.suppress(Exception):
                    device.close()
        self._button = self._led = None
