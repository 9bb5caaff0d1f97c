"""speechrnn: speech recognition with recurrent acoustic models trained with CTC."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # The Transcriber pulls in torch, numba and the decoders; import it only when asked.
    if name == "Transcriber":
        from speechrnn.transcriber import Transcriber

        return Transcriber
    raise AttributeError(f"module 'speechrnn' has no attribute {name!r}")
