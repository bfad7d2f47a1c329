"""A minimal ctypes binding to the libespeak-ng bundled by the ``espeakng-loader`` wheel.

Hand-written because no maintained pip package renders SSML to an array without a system
espeak-ng install: ``espeakng-loader`` ships only the shared library and its data, and the
Python wrappers on PyPI (py-espeak-ng, pyttsx3) shell out to the ``espeak-ng`` binary or play
through the sound card. We only need five calls of the stable C API (speak_lib.h, revision 12):
espeak_Initialize (synchronous retrieval), espeak_SetSynthCallback, espeak_SetVoiceByName,
espeak_SetParameter and espeak_Synth with the espeakSSML flag."""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import numpy as np

from parrot_ser.errors import ParrotError

# Values from speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_SSML = 0x10
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE = 1, 2, 3, 4
EE_OK = 0

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events); events are not needed.
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakUnavailable(ParrotError):
    """libespeak-ng could not be loaded or initialised (the demo then falls back to numpy)."""


class Espeak:
    """One process-wide engine: libespeak-ng keeps global state, so calls are serialised by a lock.

    That state also leaks between utterances: the same SSML renders a few samples differently
    depending on what was synthesised before, even across espeak_Terminate/espeak_Initialize
    (static wave-generator state). ``synth_fresh`` therefore renders each utterance in a forked
    child of a process that has initialised the library but never synthesised, so every utterance
    is byte-identical whatever was rendered before it (about 15 ms of fork overhead each)."""

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # the `demo` extra is not installed
            raise EspeakUnavailable(f"espeakng-loader is not installed ({e})") from None
        lib_path = espeakng_loader.get_library_path()
        try:
            data_path = espeakng_loader.get_data_path()
            lib = ctypes.CDLL(lib_path)
        except (OSError, RuntimeError) as e:
            raise EspeakUnavailable(f"{lib_path}: cannot load libespeak-ng ({e})") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        # 0x8000 = espeakINITIALIZE_DONT_EXIT: return an error instead of exit() when data is missing.
        sr = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(Path(data_path)).encode(), 0x8000)
        if sr <= 0:
            raise EspeakUnavailable(f"{data_path}: espeak_Initialize failed (returned {sr})")
        self.lib = lib
        self.sample_rate = int(sr)
        self.library_path = lib_path
        self._chunks: list[np.ndarray] = []

        def _collect(wav, n, _events):  # called by espeak from inside espeak_Synth
            if wav and n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(_collect)  # keep a reference: ctypes does not
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = Espeak()
            return cls._instance

    def synth(self, ssml: str, *, voice: str, rate: int, pitch: int, pitch_range: int,
              volume: int = 100) -> np.ndarray:
        """Render SSML with the given voice and base parameters; float32 at ``sample_rate``."""
        with self._lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise EspeakUnavailable(f"espeak voice {voice!r} not found in the bundled data")
            for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range),
                                 (PARAM_VOLUME, volume)):
                self.lib.espeak_SetParameter(param, int(value), 0)
            self._chunks = []
            data = ssml.encode("utf-8")
            rc = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0,
                                       ESPEAK_CHARS_UTF8 | ESPEAK_SSML, None, None)
            chunks, self._chunks = self._chunks, []
        if rc != EE_OK or not chunks:
            raise EspeakUnavailable(f"espeak_Synth failed (code {rc}, {len(chunks)} chunks) for {ssml[:60]!r}")
        return (np.concatenate(chunks).astype(np.float32) / 32768.0)

    def synth_fresh(self, ssml: str, **kw) -> np.ndarray:
        """``synth`` from a pristine engine state (see the class docstring). Where fork is missing
        (Windows) it renders in-process: then bytes repeat only for the same sequence of calls."""
        if not hasattr(os, "fork"):
            return self.synth(ssml, **kw)
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: render, send raw float32 (or an error message), exit without cleanup
            os.close(rfd)
            code = 0
            try:
                payload = self.synth(ssml, **kw).tobytes()
            except BaseException as e:  # reported to the parent below
                payload, code = str(e).encode(), 1
            try:
                with os.fdopen(wfd, "wb") as f:
                    f.write(payload)
            finally:
                os._exit(code)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise EspeakUnavailable(f"espeak child process failed (exit {code}): {data.decode(errors='replace')}")
        return np.frombuffer(data, dtype=np.float32).copy()
