"""Where media comes from: frame and audio sources, on a device or synthetic (the first stage of the flow).

* ``device``: what camera and microphone share: a device is lost, told once, retried, told once it is back;
* ``camera``: frame sources on a device (picamera2 on a Pi, OpenCV for a USB webcam or a looped video);
* ``microphone``: 16 kHz mono chunk sources: the base class and the PyAudio device;
* ``synthetic``: sources that need no device (a synthetic visitor, espeak-ng speech, WAV files);
* ``factory``: the one factory of sources from ``[camera]`` and ``[microphone]``.

Next: ``agent.media`` (the values they produce), then ``agent.visit``.
"""
