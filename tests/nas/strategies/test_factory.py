import ast
from pathlib import Path

import numpy as np
import pytest

import nas.strategies
from nas.strategies import RandomStrategy, RegularizedEvolution, make_strategy, strategy_class
from search_spaces import SearchSpace


def test_make_strategy_by_name(space: SearchSpace, price) -> None:
    common = {"space": space, "budget_ms": 3.0, "price": price, "seed": 0}
    assert isinstance(make_strategy("random", **common), RandomStrategy)
    evolution = make_strategy("evolution", **common, population_size=6, sample_size=2)
    assert isinstance(evolution, RegularizedEvolution) and evolution.population_size == 6
    assert strategy_class("pareto").__name__ == "ParetoSearch"
    with pytest.raises(ValueError, match="unknown strategy"):
        make_strategy("annealing", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_size"):
        make_strategy("evolution", **common, population_size=4, sample_size=5)
    assert make_strategy("random", **common).ask().dtype == np.int64


def test_only_the_pareto_module_imports_optuna() -> None:
    """`pareto_front` is used by the API: importing the package must not pay for Optuna."""
    package = Path(nas.strategies.__file__).parent
    for module in package.glob("*.py"):
        tree = ast.parse(module.read_text())
        top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
        names = [alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in top_level if isinstance(node, ast.ImportFrom)]
        imports_optuna = any(name.split(".")[0] == "optuna" for name in names)
        assert imports_optuna == (module.name == "pareto.py"), module.name
