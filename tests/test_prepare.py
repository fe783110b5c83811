"""Preparing a corpus in bounded memory: encoding in chunks gives exactly the tokens of the whole,
shards read back as one sequence, the BPE learns from an even sample of a large text, bad input
and a full disk leave nothing behind, an interrupted preparation starts again cleanly, a preset
with its own validation file records and checks its checksum, and the command prepares ahead."""

import errno
import hashlib
import random
import string
import subprocess
import sys

import numpy as np
import pytest

from tinygpt import atomic
from tinygpt.data import encoding, shards
from tinygpt.data import prepare as prep
from tinygpt.data.config import DataConfig
from tinygpt.data.corpus import python_docs_text
from tinygpt.data.tokenizer import get_tokenizer
from tinygpt.errors import UsageError

QUIET = {"say": lambda _: None}


def corpus_file(tmp_path, text: str | bytes, name: str = "a.txt"):
    f = tmp_path / name
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    return f


def messy_text(n: int, seed: int = 0) -> str:
    """Words, numbers, punctuation, runs of spaces and newlines, non-ASCII: what a cut could
    break if it fell inside a pre-token; and GPT-2's special token, which a corpus spells out."""
    rng = random.Random(seed)
    atoms = ["the", "For", " x", "123", "4567", ".", "!!", "'s", "  ", "\n", "\n\n", "\t", " ",
             "é", "日本", ",\n", "(", ")", "—", " \n ", "_", "__init__\n", "x_1\n", "9\n",
             "a\n\n\n", "\r\n", "'ll\n", "<|endoftext|>"] + list(string.ascii_letters)
    return "".join(rng.choice(atoms) for _ in range(n))


@pytest.mark.parametrize("name,seed,processes", [
    ("gpt2", 0, False), ("gpt2", 1, True), ("bpe", 0, False), ("bpe", 2, True),
    ("char", 0, False)])
def test_encoding_in_chunks_gives_the_tokens_of_the_whole_text(name, seed, processes,
                                                                monkeypatch, tmp_path):
    text = python_docs_text()[:40_000] + messy_text(8_000, seed)
    tok = get_tokenizer(name, text=text, vocab_size=400, cache_dir=tmp_path)
    monkeypatch.setattr(encoding, "ENCODE_CHARS", 500)  # hundreds of cuts
    # a large text's path (worker processes), taken by this small one
    monkeypatch.setattr(encoding, "PROCESS_BYTES", 0 if processes else 1 << 40)
    monkeypatch.setattr(encoding.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    progress = encoding.Progress(len(text.encode()), lambda _: None)
    pieces = iter(text[i : i + 777] for i in range(0, len(text), 777))
    got = np.concatenate(list(encoding.encode(tok, pieces, progress)))
    assert got.tolist() == tok.encode(text)
    assert progress.done == len(text.encode())
    assert len(list(encoding.chunks(iter([text])))) > 50


def test_shards_read_back_as_one_sequence_across_their_boundaries(tmp_path):
    ids = np.arange(1000) % 97
    writer = shards.ShardWriter(tmp_path, "train", np.dtype(np.uint16), np.ones(97, dtype=int),
                                shard_tokens=128)
    for k in range(0, 1000, 300):
        writer.add(ids[k : k + 300])
    seq = shards.ShardedTokens(tmp_path, writer.finish(), np.uint16)
    assert len(seq.shards) == 8 and len(seq) == 1000 and seq.bytes == 1000
    for a, b in ((0, 1000), (120, 140), (127, 129), (500, 500), (990, 2000)):
        assert seq[a:b].tolist() == ids[a:b].tolist()
    assert seq[-1] == ids[-1] and seq[128] == ids[128]
    assert not list(tmp_path.glob("*.tmp"))


def test_a_large_text_teaches_its_bpe_from_an_even_sample(tmp_path, monkeypatch):
    monkeypatch.setattr(prep, "BPE_SAMPLE_CHARS", 6_400)
    f = corpus_file(tmp_path, "".join(f"line {i} of the text\n" for i in range(4_000)))
    cfg = DataConfig(name="text", path=str(f), vocab_size=300, cache_dir=str(tmp_path / "c"))
    done = prep.prepare(cfg, **QUIET)
    index = (done.folder / "index.json").read_text()
    assert '"pieces": 64' in index and done.tokenizer.vocab_size == 300
    text = "".join(f"line {i}\n" for i in range(2_000))
    pieces = prep.even_sample(iter([text]), len(text))
    starts = [p.split()[1] for p in pieces.split("\n\n")]
    assert len(starts) == 64 and starts[0] == "0" and int(starts[-1]) > 1_900  # spread evenly


def test_validation_is_the_texts_last_fraction_with_exact_bytes(tmp_path):
    text = "première ligne\n" + "abc def\n" * 200
    f = corpus_file(tmp_path, text)
    done = prep.prepare(DataConfig(name="text", path=str(f), tokenizer="char",
                                   cache_dir=str(tmp_path / "c")), **QUIET)
    cut = len(text) - int(len(text) * 0.1)
    assert done.tokenizer.decode(done.val[:].tolist()) == text[cut:]
    assert done.train.bytes == len(text[:cut].encode()) and done.val.bytes == len(
        text[cut:].encode())


BAD = {
    "an empty file": (b"", "is empty"),
    "whitespace only": (b" \n\t\n", "is empty"),
    "a binary file": (b"\x00\x01\x02abc" * 10, "looks binary"),
    "invalid UTF-8": (b"good text " * 3_000_000 + b"\xff", "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_usage_error_and_leaves_nothing(case, tmp_path):
    content, needle = BAD[case]
    f = corpus_file(tmp_path, content)
    cache = tmp_path / "c"
    with pytest.raises(UsageError, match=needle) as e:
        prep.prepare(DataConfig(name="text", path=str(f), cache_dir=str(cache)), **QUIET)
    assert "\n" not in str(e.value) and str(e.value).endswith(")")
    if case == "invalid UTF-8":
        assert "at byte 30000000" in str(e.value)  # in the file, not in its last block
    assert not cache.exists() or not any(cache.glob("corpus-*"))


def test_a_disk_that_fills_while_preparing_leaves_no_half_corpus(tmp_path, monkeypatch):
    f = corpus_file(tmp_path, "some text to prepare\n" * 500)
    cache = tmp_path / "c"

    def full(self, ids):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.ShardWriter, "add", full)
    with pytest.raises(UsageError, match="No space left on device .*free some space"):
        prep.prepare(DataConfig(name="text", path=str(f), tokenizer="gpt2",
                                cache_dir=str(cache)), **QUIET)
    assert [p.name for p in cache.iterdir()] == []  # no folder, no .tmp, no lock


def test_an_interrupted_preparation_starts_again_cleanly(tmp_path, monkeypatch):
    f = corpus_file(tmp_path, "the text of a run that was killed\n" * 300)
    cfg = DataConfig(name="text", path=str(f), tokenizer="gpt2", cache_dir=str(tmp_path / "c"))
    parts = prep.sources(cfg.name, cfg.path)
    folder = tmp_path / "c" / f"corpus-gpt2-{prep.identity(parts, cfg)[:20]}"
    # what a kill leaves: a half-written shard in the work folder, and its lock
    work = folder.with_name(folder.name + ".tmp")
    work.mkdir(parents=True)
    (work / "train-00000.uint16.tmp").write_bytes(b"\x01\x00" * 7)
    lock = folder.with_suffix(".lock")
    lock.touch()
    monkeypatch.setattr(atomic, "STALE_LOCK_S", 0)  # its holder is gone
    done = prep.prepare(cfg, **QUIET)
    assert len(done.train) + len(done.val) == len(done.tokenizer.encode(f.read_text()))
    assert not work.exists() and not lock.exists()


def test_a_preset_with_its_own_validation_file_records_and_checks_its_sha256(
        tmp_path, monkeypatch, http_server, capsys):
    from tinygpt.data import corpus

    url, www = http_server
    (www / "TinyStoriesV2-GPT4-train.txt").write_text("Once upon a time.\n" * 300)
    (www / "TinyStoriesV2-GPT4-valid.txt").write_text("The end.\n" * 100)
    cfg = DataConfig(name="tinystories", tokenizer="char", url=url,
                     cache_dir=str(tmp_path / "c"))
    done = prep.prepare(cfg, **QUIET)
    assert done.tokenizer.decode(done.val[:].tolist()) == "The end.\n" * 100  # its own file
    recorded = tmp_path / "c" / "corpora" / "tinystories-train.txt.sha256"
    want = hashlib.sha256(("Once upon a time.\n" * 300).encode()).hexdigest()
    assert recorded.read_text() == want and f"recorded sha256 {want}" in capsys.readouterr().out
    assert corpus.PRESETS["tinystories"]["train"].sha256 is None  # no public source pins one
    (tmp_path / "c" / "corpora" / "tinystories-train.txt").write_text("tampered\n")
    with pytest.raises(UsageError, match="has changed since it was downloaded"):
        prep.prepare(cfg, **QUIET)


def test_progress_off_a_terminal_is_plain_lines(monkeypatch):
    said = []
    clock = iter([0.0, 3.0, 14.0, 15.0, 30.0])
    monkeypatch.setattr(encoding.time, "perf_counter", lambda: next(clock))
    p = encoding.Progress(400_000_000, said.append)  # starts at 0
    for _ in range(4):
        p.advance(100_000_000)
    assert len(said) == 2 and said[0].startswith("preparing: 200 / 400 MB")
    assert "MB/s, eta" in said[0]


def test_the_command_prepares_ahead_and_a_run_reads_it(tmp_path, monkeypatch, capsys):
    from tinygpt.cli.prepare import main

    f = corpus_file(tmp_path, "prepared once, read by every run\n" * 400)
    args = ["data=text", f"data.path={f}", "data.tokenizer=gpt2", f"data.cache_dir={tmp_path}/c"]
    monkeypatch.setattr("sys.argv", ["tinygpt-prepare", *args])
    main()
    out = capsys.readouterr().out
    assert "prepared text:" in out and "ready:" in out
    calls = []
    monkeypatch.setattr(prep, "build", lambda *a: calls.append(a))
    from tinygpt.data.windows import load_split

    split = load_split(DataConfig(name="text", path=str(f), tokenizer="gpt2",
                                  cache_dir=str(tmp_path / "c")), 16)
    assert calls == [] and len(split.train_ids) > 0


def test_the_command_answers_a_glob_that_matches_nothing_with_one_error_line(
        tmp_path, monkeypatch, capsys):
    from tinygpt.cli.prepare import main

    monkeypatch.setattr("sys.argv", ["tinygpt-prepare", "data=text",
                                     f"data.path={tmp_path}/*.nothing"])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "no text file at data.path=" in err[0]


PREPARE_AND_SAY = ("import sys; from tinygpt.data.config import DataConfig; "
                   "from tinygpt.data.prepare import prepare; "
                   "p = prepare(DataConfig(name='text', path=sys.argv[1], "
                   "tokenizer='gpt2',"
                   " cache_dir=sys.argv[2])); print('folder', p.folder, len(p.train))")


def test_processes_that_start_at_once_prepare_a_corpus_once(tmp_path):
    # what the ranks of a multi-process run do: one prepares, the others wait for its index
    f = corpus_file(tmp_path, python_docs_text() * 8)  # a few MB: a second or two to prepare
    procs = [subprocess.Popen([sys.executable, "-c", PREPARE_AND_SAY, str(f), str(tmp_path / "c")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    said = "".join(out for out, _ in outs)
    assert said.count("prepared text:") == 1
    assert len({line for line in said.splitlines() if line.startswith("folder")}) == 1


def prepared_folder(tmp_path, tokenizer: str = "gpt2"):
    f = corpus_file(tmp_path, "".join(f"line {i} of a corpus to prepare\n" for i in range(400)))
    cfg = DataConfig(name="text", path=str(f), tokenizer=tokenizer, cache_dir=str(tmp_path / "c"))
    return cfg, prep.prepare(cfg, **QUIET)


def test_the_index_counts_each_token_of_each_split(tmp_path):
    # the run's unigram baseline reads these counts, never the shards
    cfg, done = prepared_folder(tmp_path)
    for split, ids in (("train", done.train), ("val", done.val)):
        want = np.bincount(ids[:].astype(np.int64), minlength=done.tokenizer.vocab_size)
        assert np.array_equal(done.counts[split], want)


@pytest.mark.parametrize("damage", ["a truncated shard", "a missing shard", "a broken index",
                                    "an older format"])
def test_a_damaged_prepared_corpus_is_prepared_again(tmp_path, damage):
    import json

    cfg, done = prepared_folder(tmp_path)
    want = done.train[:].copy()
    shard = done.folder / done.train.shards[0].name
    index = done.folder / "index.json"
    if damage == "a truncated shard":
        shard.write_bytes(shard.read_bytes()[:-10])
    elif damage == "a missing shard":
        shard.unlink()
    elif damage == "a broken index":
        index.write_text(index.read_text()[:100])
    else:
        index.write_text(json.dumps(json.loads(index.read_text()) | {"format": 1}))
    said = []
    again = prep.prepare(cfg, say=said.append)
    assert any("is damaged" in line and "preparing it again" in line for line in said), said
    assert np.array_equal(again.train[:], want) and prep.damage(again.folder) is None


def test_a_corrupt_cached_tokenizer_is_learnt_again(tmp_path):
    from tinygpt.data.tokenizer import read_bpe

    cfg, done = prepared_folder(tmp_path, tokenizer="bpe")
    cached = list((tmp_path / "c").glob("bpe-*.json"))
    assert len(cached) == 1
    cached[0].write_text('{"name": "bpe", "ranks": "!!"')  # cut short
    import shutil

    shutil.rmtree(done.folder)  # so the corpus is prepared again and reads its tokenizer
    with pytest.warns(UserWarning, match="cannot be read: learning the tokenizer again"):
        again = prep.prepare(cfg, **QUIET)
    assert again.tokenizer.encode("line 7 of") == done.tokenizer.encode("line 7 of")
    assert read_bpe(cached[0]) is not None  # and written whole again


def test_a_corpus_too_short_is_refused_before_anything_is_cached(tmp_path):
    f = corpus_file(tmp_path, "a short text. " * 5)
    cache = tmp_path / "c"
    for tokenizer in ("char", "bpe", "gpt2"):
        with pytest.raises(UsageError, match="too short"):
            prep.prepare(DataConfig(name="text", path=str(f), tokenizer=tokenizer,
                                    cache_dir=str(cache)), shortest=33, **QUIET)
    assert not [p for p in cache.rglob("*") if p.is_file()]
