"""Hints in one-line errors point where the docs point: the folder a command writes, the command that fills it."""

from pathlib import Path

import pytest

from pasa.checks import CheckError, check_index_dir, check_model_path, missing_checkpoint_hint

ROOT = Path(__file__).resolve().parents[2]


def test_the_title_index_hint_names_the_folder_the_docs_build(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckError) as err:
        check_index_dir("data/arxiv_titles/title_index", "--title_index", command="pasa build-db")
    assert "`pasa build-db --output_dir data/arxiv_titles ...`" in str(err.value)
    assert (
        "pasa build-db --metadata data/arxiv-metadata-oai-snapshot.json --output_dir data/arxiv_titles"
        in (ROOT / "README.md").read_text()
    )
    with pytest.raises(CheckError) as err:
        check_index_dir("idx", "--search_index")
    assert "`pasa index --output_dir idx ...`" in str(err.value)


@pytest.mark.parametrize(
    "path, expected",
    [
        ("checkpoints/pasa-7b-crawler", "run `pasa download`"),
        ("results/sft_crawler", "train it first"),
        ("results/ppo_crawler", "train it first"),
        ("./my_models/x", "or pass a checkpoint folder"),
    ],
)
def test_a_missing_checkpoint_hint_fits_what_the_folder_is(path, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert expected in missing_checkpoint_hint(path)
    with pytest.raises(CheckError) as err:
        check_model_path(path, "--crawler_path")
    assert expected in str(err.value)
    (tmp_path / path).mkdir(parents=True)  # left empty by a failed training launch
    with pytest.raises(CheckError) as err:
        check_model_path(path, "--crawler_path")
    assert "no config.json" in str(err.value) and expected in str(err.value)


def test_reproduce_with_an_untrained_ppo_crawler_says_to_train_it(tiny_artifacts, monkeypatch, capsys, tmp_path):
    from pasa import reproduce

    monkeypatch.chdir(tiny_artifacts)
    monkeypatch.delenv("SERPER_API_KEY", raising=False)
    argv = ["--limit", "1", "--benchmarks", "real", "--output_dir", str(tmp_path), "--crawler_path",
            "results/ppo_crawler", "--search_index", "data/paper_database/search_index"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        reproduce.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train it first" in err[0] and "run `pasa download`" not in err[0]
