"""The config schema and configs/: composing, validating, one home per default, the docs'
key table."""

import re
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import open_dict, read_write

from tinygpt.training.config import compose_train, config_keys

CONFIGURATION = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_docs_key_table_is_the_schema():
    text = CONFIGURATION.read_text().split("## Config keys", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \| `([^`]*)` \|", text, flags=re.M))
    assert rows == config_keys()


@pytest.mark.parametrize(
    "override,needle",
    [("model.attenton.scale=false", "attenton"), ("model.n_layers=four", "n_layers"),
     ("data.tokenizer=bert", "bert"), ("on_nonfinite=maybe", "maybe"),
     ("trainer.max_stepz=3", "max_stepz")],
)
def test_misspelt_key_wrong_type_or_unknown_choice_fails_composing(override, needle):
    with pytest.raises(ConfigCompositionException) as e:
        compose_train(override)
    assert needle in str(e.value) + str(e.value.__cause__)


def test_experiment_configs_are_small_diffs():
    cfg = compose_train("variant=no_scale")
    assert cfg.model.attention.scale is False
    assert cfg.model.n_layers == compose_train().model.n_layers
    assert compose_train("variant=no_mask").model.attention.causal is False


def test_the_tiny_shape_lives_in_one_place():
    cfg = compose_train()
    assert (cfg.model.n_layers, cfg.model.emb_dim, cfg.model.context_length) == (4, 128, 128)
    gpt2 = compose_train("model=gpt2_124m").model  # GPTConfig's own defaults, plus qkv_bias
    assert (gpt2.n_layers, gpt2.emb_dim, gpt2.qkv_bias) == (12, 768, True)


def sweep_jobs(experiment: str) -> list:
    """The jobs `-m experiment=...` launches (Hydra's basic sweeper over the experiment's
    hydra.sweeper.params), each composed (no run)."""
    from tinygpt.training.precheck import parse
    from tinygpt.training.precheck import sweep_jobs as jobs

    cfg = compose_train(f"experiment={experiment}", hydra=True)
    assert cfg.hydra.mode is None  # one run without -m: the experiment does not pick the mode
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    return [compose_train(f"experiment={experiment}", *job) for job in jobs(parse(params))]


def test_attention_ablation_composes_to_the_2x2_grid_on_three_seeds():
    jobs = sweep_jobs("attention_ablation")
    grid = sorted((j.model.attention.scale, j.model.attention.causal, j.seed) for j in jobs)
    seeds = (1, 2, 3)
    assert grid == [(s, c, seed) for s in (False, True) for c in (False, True) for seed in seeds]
    assert all(j.data.tokenizer == "char" and j.trainer.max_steps == 600 for j in jobs)


def test_head_dim_sweep_repeats_scale_on_and_off_per_head_dimension():
    jobs = sweep_jobs("head_dim_sweep")
    grid = sorted((j.model.emb_dim // j.model.n_heads, j.model.attention.scale, j.seed)
                  for j in jobs)
    seeds = (1, 2, 3)
    assert grid == [(d, s, seed) for d in (16, 64, 256) for s in (False, True) for seed in seeds]


def test_sweep_folder_names_keep_paths_in_values_flat():
    from tinygpt.run_dir import folder_name

    name = folder_name("data.path:../corpus/a.txt+model.n_heads:4")
    assert name == "data.path:.._corpus_a.txt+model.n_heads:4" and "/" not in name


def test_run_folder_names_paste_back_into_an_override():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = compose_train("seed=9", "optim.betas=[0.9,0.99]", "data.path=notes/**/*.txt",
                        "trainer.enable_progress_bar=false", hydra=True)
    run_dir = cfg.hydra.run.dir
    name = run_dir.split("/")[1]
    assert name == "data.path:notes_.txt+optim.betas:_0.9_0.99_+seed:9"  # no plumbing keys
    parsed = OverridesParser.create().parse_overrides([f"hydra.run.dir={run_dir}"])[0]
    assert parsed.value() == run_dir  # one value, not a sweep, not a parse error
    assert compose_train(hydra=True).hydra.run.dir.startswith("outputs/default/")


def test_an_experiment_names_its_own_sweep_folder():
    cfg = compose_train("experiment=positions", hydra=True)
    assert cfg.hydra.sweep.dir.startswith("outputs/positions/")
    assert compose_train(hydra=True).hydra.sweep.dir.startswith("outputs/multirun/")


def test_a_sweep_jobs_folder_leads_with_what_the_sweep_varies():
    from tinygpt.run_dir import folder_name
    from tinygpt.training.hydra_callbacks import sweep_keys

    # as Hydra hands a multirun's config to its callbacks: the command line's lists unexpanded
    cfg = compose_train("experiment=positions", "trainer.max_steps=5", hydra=True)
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.overrides.task.append("optim.lr=1e-3,2e-3")
    varying = sweep_keys(cfg)
    assert varying == {"seed", "model.positions", "optim.lr"}
    name = folder_name("experiment:positions+model.positions:rope+optim.lr:0.002+seed:2", varying)
    assert name == "model.positions:rope+optim.lr:0.002+seed:2+experiment:positions"
