"""Property-based tests: broken manifests, trn files, ARPA files, configs and ``--set``
strings, audio headers and log-probability arrays never give a traceback, a silent wrong
result or a changed output file; each is used, or refused with a message naming it.

Examples are bounded and derandomised (the same ones on every run), to fit CI's budget.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from speechrnn import audio
from speechrnn.cli import main
from speechrnn.decoding.beam import BeamSearchDecoder
from speechrnn.decoding.greedy import GreedyDecoder
from speechrnn.decoding.lm import ArpaLM, LMError
from speechrnn.text import CharTokenizer
from speechrnn.training.config import load_config

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# JSON-ish values of every type, including the awkward ones
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
garbage_lines = st.one_of(st.text(max_size=40), st.binary(max_size=40).map(
    lambda b: b.decode("latin-1")))


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and standard error of ``speechrnn ARGS`` run in this process; any exception
    escaping main() (a traceback for the user) fails the test."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(list(args))
    return code, err.getvalue()


def refused_by_name(code: int, err: str, path: Path) -> None:
    assert code in (1, 2), err
    first = err.strip().splitlines()[0]
    assert str(path) in first and "Traceback" not in err


@st.composite
def manifest_lines(draw) -> str:
    good = {"id": "u1", "audio": "a.wav", "duration": 1.0, "text": "yes no", "speaker": "s"}
    kind = draw(st.sampled_from(["field", "garbage", "object"]))
    if kind == "field":
        broken = dict(good)
        key = draw(st.sampled_from([*good, "offset"]))
        broken[key] = draw(values)
        return json.dumps(broken, allow_nan=True)
    if kind == "object":
        return json.dumps(draw(values), allow_nan=True)
    return draw(garbage_lines).replace("\n", " ")


@FUZZ
@given(lines=st.lists(manifest_lines(), min_size=1, max_size=4))
def test_broken_manifests_are_refused_by_name_and_touch_no_output(lines):
    with tempfile.TemporaryDirectory() as folder:
        manifest, arpa = Path(folder) / "m.jsonl", Path(folder) / "lm.arpa"
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
        arpa.write_text("old")
        code, err = run_cli("lm", "build", str(manifest), str(arpa), "--order", "2")
        if code == 0:
            assert ArpaLM.load(arpa).order == 2
        else:
            refused_by_name(code, err, manifest)
            assert arpa.read_text() == "old"
        assert sorted(p.name for p in Path(folder).iterdir()) == ["lm.arpa", "m.jsonl"]


@FUZZ
@given(lines=st.lists(garbage_lines, min_size=1, max_size=5))
def test_broken_trn_files_score_or_are_refused_by_name(lines):
    with tempfile.TemporaryDirectory() as folder:
        ref, hyp = Path(folder) / "ref.trn", Path(folder) / "hyp.trn"
        ref.write_text("yes no (u1)\nno (u2)\n")
        hyp.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
        code, err = run_cli("score", "--ref", str(ref), "--hyp", str(hyp), "--json")
        if code in (0, 1):
            assert "Traceback" not in err
        else:
            refused_by_name(code, err, hyp)


ARPA = ("\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-1.0\t<s>\t-0.3\n-0.5\tyes\t-0.2\n"
        "-0.6\tno\t-0.1\n-0.5\t</s>\n\n\\2-grams:\n-0.2\t<s> yes\n-0.4\tyes no\n\n\\end\\\n")


@st.composite
def broken_arpa(draw) -> str:
    lines = ARPA.split("\n")
    for _ in range(draw(st.integers(1, 3))):
        index = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["replace", "delete", "field"]))
        if action == "delete":
            del lines[index]
        elif action == "replace":
            lines[index] = draw(garbage_lines).replace("\n", " ")
        else:
            fields = lines[index].split("\t")
            position = draw(st.integers(0, len(fields) - 1))
            fields[position] = draw(st.sampled_from(
                ["nan", "inf", "-inf", "1.5", "x", "", "ngram 9=1", "\\3-grams:", "-0.1"]))
            lines[index] = "\t".join(fields)
        if not lines:
            break
    return "\n".join(lines)


@FUZZ
@given(text=broken_arpa())
def test_broken_arpa_files_load_consistently_or_are_refused_by_line(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lm.arpa"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            lm = ArpaLM.load(path)
        except LMError as error:
            assert str(error).startswith(str(path))
            return
        for table in lm.ngrams[1:]:  # what loads is usable: finite, ≤ 0, counts as declared
            for logprob, backoff in table.values():
                assert logprob <= 0 and math.isfinite(backoff)
        tokenizer = CharTokenizer.build(["yes no"])
        log_probs = torch.log_softmax(torch.randn(12, len(tokenizer)), -1)
        assert isinstance(BeamSearchDecoder(tokenizer, lm, beam=4).decode(log_probs)[0].text,
                          str)


set_keys = st.sampled_from(["model.hidden", "model.layers", "model.bidirectional", "epochs",
                            "optim.lr", "data.train", "features.sample_rate", "augment.vtlp",
                            "model", "nonsense.key", "model.cell", "", "a..b"])
set_values = st.one_of(st.sampled_from(["abc", "-2", "0", "1e-3", "maybe", "[1,", "null",
                                        "[]", "{}", "nan", "inf", "true", "3"]),
                       st.text(max_size=8))


@FUZZ
@given(settings_=st.lists(st.tuples(set_keys, set_values), max_size=3),
       yaml_text=st.one_of(st.none(), st.sampled_from(["- a", "3", "model: 4", "model:\n  x: 1",
                                                       "epochs: -1", "{", "optim: {lr: abc}"]),
                           st.text(max_size=30)))
def test_configs_and_set_strings_load_checked_or_are_refused_by_name(settings_, yaml_text):
    overrides = [f"{key}={value}" for key, value in settings_]
    with tempfile.TemporaryDirectory() as folder:
        path = None
        if yaml_text is not None:
            path = Path(folder) / "c.yaml"
            path.write_text(yaml_text, encoding="utf-8", errors="surrogatepass")
        try:
            config = load_config(path, overrides)
        except ValueError as error:
            message = str(error)
            assert message and "\n" not in message.strip()
            named = [str(path)] if path else []
            named += [key for key, _ in settings_ if key] + ["--set", "config", "preset"]
            assert any(name and name in message for name in named), message
            return
        assert config.model.hidden >= 1 and config.model.layers >= 1 and config.epochs >= 1
        assert isinstance(config.model.bidirectional, bool)
        assert config.optim.lr > 0 and math.isfinite(config.optim.lr)
        code, err = run_cli("train", "--outdir", str(Path(folder) / "out"),
                            *[item for o in overrides for item in ("--set", o)],
                            *(["--config", str(path)] if path else []),
                            "--set", "data.train=" + str(Path(folder) / "absent.jsonl"))
        assert code == 2 and "absent.jsonl" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def audio_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("audio")
    tone = (0.2 * np.sin(np.arange(4000) * 0.05)).astype(np.float32)
    blobs = {}
    for suffix, subtype in ((".wav", "PCM_16"), (".wav", "FLOAT"), (".flac", "PCM_16")):
        path = folder / f"x-{subtype}{suffix}"
        sf.write(path, tone, 16000, subtype=subtype)
        blobs[path.name] = path.read_bytes()
    return blobs


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_broken_audio_headers_load_finite_or_are_refused_by_name(audio_files, data):
    name = data.draw(st.sampled_from(sorted(audio_files)))
    blob = bytearray(audio_files[name])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, 59))  # the header and the first frames
        blob[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(bytes(blob))
        try:
            waveform = audio.load(path, 16000)
        except audio.AudioError as error:
            assert str(error).startswith(str(path))
            return
        assert waveform.dim() == 1 and waveform.numel() > 0
        assert torch.isfinite(waveform).all()


tokenizer_for_arrays = CharTokenizer.build(["ab c"])


@FUZZ
@given(shape=st.lists(st.integers(0, 8), min_size=0, max_size=3),
       length=st.one_of(st.none(), st.integers(-3, 12)),
       fill=st.sampled_from(["random", "nan", "inf", "-inf", "zeros"]),
       dtype=st.sampled_from([np.float32, np.float64, np.float16]))
def test_decoders_take_any_array_or_refuse_it_with_a_value_error(shape, length, fill, dtype):
    rng = np.random.default_rng(len(shape))
    array = {"random": lambda: rng.standard_normal(shape),
             "nan": lambda: np.full(shape, np.nan), "inf": lambda: np.full(shape, np.inf),
             "-inf": lambda: np.full(shape, -np.inf),
             "zeros": lambda: np.zeros(shape)}[fill]().astype(dtype)
    vocabulary = len(tokenizer_for_arrays)
    for decoder in (BeamSearchDecoder(tokenizer_for_arrays, beam=3),
                    GreedyDecoder(tokenizer_for_arrays)):
        try:
            hypotheses = decoder.decode(array, length)
        except ValueError:
            valid = (len(shape) == 2 and shape[0] > 0 and shape[1] == vocabulary
                     and (length is None or 0 <= length <= shape[0])
                     and (fill not in ("nan", "inf") or length == 0))
            assert not valid
            continue
        assert len(shape) == 2 and shape[1] == vocabulary
        assert fill not in ("nan", "inf") or length == 0
        assert isinstance(hypotheses[0].text, str)
        assert set(hypotheses[0].text) <= set("ab c")
