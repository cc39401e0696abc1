import json

import numpy as np

from nas.evaluation.proxy_study import main, rank_correlations, sample_specs


def test_digits_are_standardised_stratified_and_32px(digits):
    assert digits.x_train.shape == (1437, 1, 32, 32) and digits.x_val.shape == (360, 1, 32, 32)
    assert digits.x_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    assert abs(float(digits.x_train.mean())) < 1e-4 and abs(float(digits.x_train.std()) - 1.0) < 1e-4
    val_share = np.bincount(digits.y_val, minlength=10) / np.bincount(
        np.concatenate([digits.y_train, digits.y_val]), minlength=10
    )
    assert np.all(np.abs(val_share - 0.2) < 0.02)


def test_sampled_specs_are_distinct_grayscale_ten_class_networks(digits):
    specs = sample_specs(5, seed=0, data=digits)
    assert len({spec.content_hash() for spec in specs}) == 5
    assert all(spec.in_channels == 1 and spec.head.num_classes == 10 and spec.resolution == 32 for spec in specs)


def test_rank_correlations_of_a_monotone_predictor_are_one():
    assert rank_correlations([1, 2, 3, 4], [0.1, 0.5, 0.6, 0.9]) == (1.0, 1.0)


def test_the_study_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "study.json"
    main(["--n", "3", "--epochs", "1", "--max-train-images", "128", "--json", str(out)])

    printed = capsys.readouterr().out
    assert "spearman" in printed and "naswot" in printed and "synflow" in printed
    written = json.loads(out.read_text())
    assert len(written["rows"]) == 3
    assert set(written["summary"]) == {"naswot", "synflow", "params", "madds", "training"}
