"""The one factory of capture sources: what ``[camera]`` and ``[microphone]`` ask for, device or synthetic."""

from __future__ import annotations

import importlib.util
import shutil
from typing import Optional

from agent.capture.camera import FrameSource, OpenCVCamera, Picamera2Camera
from agent.capture.microphone import AudioSource, PyAudioMicrophone
from agent.capture.synthetic import EXPRESSION_SCENE, SpeechSource, SyntheticCamera, WavFileSource
from agent.config import CameraConfig, MicrophoneConfig
from agent.errors import AgentError


def open_camera(cfg: CameraConfig) -> Optional[FrameSource]:
    """The frame source ``cfg`` asks for, or None for ``source = "none"``.

    Raises :class:`AgentError` when the source's library is not installed: that is an installation
    problem a retry loop would only hide.
    """
    if cfg.source == "none":
        return None
    needed = {"picamera2": "picamera2", "opencv": "cv2", "synthetic": "skimage"}.get(cfg.source)
    if needed and importlib.util.find_spec(needed) is None:
        hint = (
            "on Raspberry Pi OS: sudo apt install python3-picamera2, and create the venv with "
            "--system-site-packages"
            if cfg.source == "picamera2"
            else "the synthetic camera is for the demo and tests: pip install 'hume-edge-agent[vision,demo]'"
            if cfg.source == "synthetic"
            else "install the agent with its 'vision' extra: pip install 'hume-edge-agent[vision]'"
        )
        raise AgentError(f"camera.source = {cfg.source!r} needs the Python module {needed!r}: {hint}")
    if cfg.source == "picamera2":
        return Picamera2Camera(cfg.width, cfg.height, cfg.fps)
    if cfg.source == "opencv":
        return OpenCVCamera(cfg.device, cfg.width, cfg.height, cfg.fps)
    if cfg.source == "synthetic":
        return SyntheticCamera(cfg.width, cfg.height, cfg.fps, scene=EXPRESSION_SCENE, loop=True)
    raise ValueError(f"camera.source = {cfg.source!r}: must be synthetic, opencv, picamera2 or none")


def open_microphone(cfg: MicrophoneConfig) -> Optional[AudioSource]:
    """The audio source ``cfg`` asks for, or None for ``source = "none"``.

    Raises :class:`AgentError` when what the source needs is not installed.
    """
    if cfg.source == "none":
        return None
    if cfg.source == "speech":
        if shutil.which("espeak-ng") is None:
            raise AgentError("microphone.source = 'speech' needs espeak-ng: sudo apt install espeak-ng")
        return SpeechSource(cfg.chunk_ms)
    if cfg.source == "wav":
        return WavFileSource(cfg.wav_path, cfg.chunk_ms)
    if cfg.source == "pyaudio":
        if importlib.util.find_spec("pyaudio") is None:
            raise AgentError(
                "microphone.source = 'pyaudio' needs PyAudio: sudo apt install portaudio19-dev, then "
                "pip install 'hume-edge-agent[audio]'"
            )
        return PyAudioMicrophone(cfg.device, cfg.device_rate, cfg.chunk_ms)
    raise ValueError(f"microphone.source = {cfg.source!r}: must be speech, wav, pyaudio or none")
