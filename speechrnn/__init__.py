"""speechrnn: speech recognition with recurrent acoustic models trained with CTC."""

__version__ = "0.1.0"
