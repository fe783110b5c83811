import numpy as np
import pytest
import torch

from tinygpt.data.config import DataConfig
from tinygpt.data.corpus import load_text
from tinygpt.data.windows import TokenWindows, unigram_baseline
from tinygpt.errors import UsageError
from tinygpt.training.datamodule import TextDataModule


def test_python_docs_corpus_is_embedded_and_large():
    text = load_text("python_docs")
    assert len(text) > 400_000 and 'The "for" statement' in text


def test_text_corpus_from_file_directory_and_glob(tmp_path):
    (tmp_path / "a.txt").write_text("alpha", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("beta", encoding="utf-8")
    (tmp_path / "c.md").write_text("gamma", encoding="utf-8")
    assert load_text("text", str(tmp_path / "a.txt")) == "alpha"
    assert load_text("text", str(tmp_path)) == "alpha\n\nbeta"
    assert load_text("text", str(tmp_path / "**" / "*.md")) == "gamma"


@pytest.mark.parametrize(
    "setup,match",
    [
        (lambda p: p.write_text("  \n", encoding="utf-8"), "empty"),
        (lambda p: p.write_bytes(b"caf\xe9 au lait"), "not UTF-8"),
    ],
)
def test_unreadable_corpus_says_what_to_do(tmp_path, setup, match):
    f = tmp_path / "corpus.txt"
    setup(f)
    with pytest.raises(ValueError, match=match):
        load_text("text", str(f))


def test_a_prepared_corpus_is_reused_and_prepared_again_after_an_edit(tmp_path, monkeypatch):
    from tinygpt.data import prepare

    f = tmp_path / "a.txt"
    f.write_text("hello world\n" * 50)
    cfg = DataConfig(name="text", path=str(f), tokenizer="gpt2", cache_dir=str(tmp_path / "c"))
    first = prepare.prepare(cfg, say=lambda _: None)
    tok = first.tokenizer
    n = len(tok.encode("hello world\n" * 50))
    assert len(first.train) + len(first.val) == n
    calls = []
    monkeypatch.setattr(prepare, "build", lambda *a: calls.append(a))
    again = prepare.prepare(cfg, say=lambda _: None)  # the same text: read back, not prepared
    assert calls == [] and again.folder == first.folder
    monkeypatch.undo()
    f.write_text("hello world!\n" * 50)  # changed text: prepared again, in a folder of its own
    edited = prepare.prepare(cfg, say=lambda _: None)
    assert edited.folder != first.folder and len(list((tmp_path / "c").glob("corpus-*"))) == 2


def test_windows_are_shifted_by_one_with_stride():
    ids = np.arange(20, dtype=np.uint16)
    ds = TokenWindows(ids, context_length=4, stride=3)
    assert len(ds) == 6  # starts 0, 3, ..., 15; the last needs ids[15:20]
    x, y = ds[2]
    assert x.tolist() == [6, 7, 8, 9] and y.tolist() == [7, 8, 9, 10]


def test_sampler_ranks_split_each_batch_disjointly():
    from tinygpt.data.windows import ResumableSampler

    one = list(ResumableSampler(100, batch_size=8, seed=3))
    r0 = list(ResumableSampler(100, batch_size=4, seed=3, rank=0, world_size=2))
    r1 = list(ResumableSampler(100, batch_size=4, seed=3, rank=1, world_size=2))
    assert len(one) == 96 and len(r0) == len(r1) == 48 and not set(r0) & set(r1)
    for k in range(12):  # step k: the two ranks' batches together are the one-process batch
        both = set(r0[4 * k : 4 * k + 4]) | set(r1[4 * k : 4 * k + 4])
        assert both == set(one[8 * k : 8 * k + 8])


def test_sampler_resumes_mid_epoch_and_moves_to_the_next():
    from tinygpt.data.windows import ResumableSampler

    full = ResumableSampler(20, batch_size=4, seed=1)
    epoch0, epoch1 = list(full), list(full)
    assert sorted(epoch0) == list(range(20)) and epoch0 != epoch1
    late = ResumableSampler(20, batch_size=4, seed=1)
    late.start = 8
    assert list(late) == epoch0[8:] and list(late) == epoch1


def test_data_module_splits_contiguously(tmp_path):
    dm = TextDataModule(DataConfig(tokenizer="char", cache_dir=str(tmp_path)), context_length=16)
    dm.load()
    n = len(dm.train_ids) + len(dm.val_ids)
    assert len(dm.val_ids) == int(n * 0.1)
    assert dm.train_ids[-1] == dm.train_set.ids[-1] and dm.val_ids[0] == dm.val_set.ids[0]
    batch = next(iter(dm.val_dataloader()))
    assert batch[0].shape == (16, 16) and batch[0].dtype == torch.int64


def test_corpus_too_short_for_windows(tmp_path):
    f = tmp_path / "tiny.txt"
    f.write_text("just a few words here", encoding="utf-8")
    dm = TextDataModule(DataConfig(name="text", path=str(f), cache_dir=str(tmp_path)),
                        context_length=64)
    with pytest.raises(UsageError, match="too short"):
        dm.load()


def test_bad_val_fraction_and_unknown_choices():
    with pytest.raises(UsageError, match="val_fraction"):
        DataConfig(val_fraction=1.0).validate()
    with pytest.raises(UsageError, match="data.name='wikipedia' is unknown .*python_docs"):
        DataConfig(name="wikipedia")
    with pytest.raises(UsageError, match="data.tokenizer='bert' is unknown .*gpt2, bpe, char"):
        DataConfig(tokenizer="bert")


def test_unigram_baseline_of_uniform_text_is_log_vocab():
    counts = np.array([100, 100, 100, 100])
    # add-one smoothing over a vocabulary of 4 seen equally often: every token has p = 1/4
    assert unigram_baseline(counts, counts) == pytest.approx(np.log(4))
    # and it is the mean of -log p over the validation tokens, however they are counted
    train, val = np.array([3, 1, 0]), np.array([0, 2, 5])
    p = (train + 1) / (train + 1).sum()
    ids = np.array([1, 1, 2, 2, 2, 2, 2])
    assert unigram_baseline(train, val) == pytest.approx(-np.log(p[ids]).mean())


def test_bad_stride_is_refused():
    with pytest.raises(UsageError, match="data.stride=0 must be at least 1"):
        DataConfig(stride=0).validate()


def test_the_cache_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    from tinygpt.data.corpus import cache_path

    elsewhere = tmp_path / "scratch"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("TINYGPT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_path() == tmp_path / "xdg" / "tinygpt"  # the user's cache folder
    monkeypatch.setenv("TINYGPT_CACHE", str(tmp_path / "env"))
    assert cache_path() == tmp_path / "env"  # the environment variable wins over it
    assert cache_path("rel") == elsewhere / "rel"  # data.cache_dir wins over both, made absolute
    dm = TextDataModule(DataConfig(tokenizer="char"), context_length=16)
    dm.load()
    assert not any(elsewhere.iterdir())  # nothing left in the folder the run started from
    assert list((tmp_path / "env").glob("corpus-char-*"))


BUILD = """
import hashlib, sys
from tinygpt.data.config import DataConfig
from tinygpt.training.datamodule import TextDataModule
dm = TextDataModule(DataConfig(tokenizer="bpe", vocab_size=1024, cache_dir=sys.argv[1]), 64)
dm.load()
print(hashlib.sha256(dm.train_ids[:].tobytes() + dm.val_ids[:].tobytes()).hexdigest())
"""


def test_two_processes_building_the_same_cache_entry_at_once_both_get_it_whole(tmp_path):
    import subprocess
    import sys

    cache = tmp_path / "cache"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(cache)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    hashes = [out.splitlines()[-1] for out, _ in outs]
    assert hashes[0] == hashes[1]  # the same tokens in both
    names = sorted(p.name for p in cache.iterdir())
    # the BPE and one prepared corpus, prepared once: no second folder, no lock, no .tmp left
    assert len(names) == 2 and not any(".tmp" in n or ".lock" in n for n in names), names
    assert sum("prepared python_docs" in out for out, _ in outs) == 1  # one process prepared it


def test_bos_windows_start_with_the_token_and_score_each_text_token_once():
    from tinygpt.data.windows import TokenWindows

    ids = np.arange(10, 30)
    w = TokenWindows(ids, 5, 5, bos=0)
    assert len(w) == 4
    x, y = w[1]
    assert x.tolist() == [0, 15, 16, 17, 18] and y.tolist() == [15, 16, 17, 18, 19]
    assert sorted(t for i in range(len(w)) for t in w[i][1].tolist()) == ids.tolist()


def test_repeated_segments_replace_a_share_of_windows_the_same_way_every_time():
    from tinygpt.data.config import Synthetic
    from tinygpt.data.windows import WithSynthetic

    def repeats(share: float, vocab: int) -> WithSynthetic:
        return WithSynthetic(base, Synthetic(kind="repeats", share=share, length=4), vocab)

    base = TokenWindows(np.arange(1000) % 97, 8, 8)
    none, every = repeats(0.0, 50), repeats(1.0, 10**6)
    assert all(torch.equal(none[i][0], base[i][0]) for i in range(len(base)))
    periods = set()
    for i in range(len(base)):
        x, y = every[i]
        n = next(n for n in range(1, 9) if torch.equal(x[n:], x[:-n]))  # the segment's length
        periods.add(n)
        assert torch.equal(y[:-1], x[1:]) and y[-1] == x[8 % n]
    assert periods == {2, 3, 4}  # half to all of the length: no fixed offset finds the copy
    half = repeats(0.5, 50)
    chosen = [not torch.equal(half[i][0], base[i][0]) for i in range(len(base))]
    assert 0.25 < sum(chosen) / len(chosen) < 0.75
    assert all(torch.equal(half[i][0], repeats(0.5, 50)[i][0])
               for i in range(len(base)))  # a function of the index: a resume sees the same


def test_data_options_reach_the_split(tmp_path):
    from tinygpt.data.config import Synthetic
    from tinygpt.data.windows import WithSynthetic, load_split

    split = load_split(DataConfig(cache_dir=str(tmp_path), bos=True, vocab_size=300,
                                  synthetic=Synthetic(kind="repeats", share=0.3)), 16)
    assert isinstance(split.train_set, WithSynthetic) and split.train_set.cfg.length == 2
    assert split.val_set[0][0][0] == split.tokenizer.eot_token
