"""The EM driver, the registry and the package's layering."""
import ast
import itertools
from pathlib import Path

import pytest
import torch

import speechvae
from speechvae.enhancement import (
    MCEMConfig,
    VEMConfig,
    algorithm_for_config,
    available_algorithms,
    converged,
    get_algorithm,
)
from speechvae.enhancement.em import EMResult, EStep, InferenceStep, run_em
from speechvae.enhancement.model import EMConfig, wiener_gain
from speechvae.priors import VAE, VAEConfig
from speechvae.stft import stft

PACKAGE = Path(speechvae.__file__).resolve().parent


def test_stopping_rule_stops_where_the_objective_flattens():
    # an objective that falls geometrically, then is flat from iteration 30 on
    obj = [10.0 * 0.8 ** min(i, 30) for i in range(60)]
    stop = next(i + 1 for i in range(len(obj)) if converged(obj[:i + 1], 1e-3, 5))
    assert 30 < stop <= 40  # one full window past the knee
    assert not converged(obj[:20], 1e-3, 5)  # still falling
    assert not converged(obj, 0.0, 5)  # tol = 0 disables the rule
    assert not converged(obj[:9], 1.0, 5)  # fewer than two windows


def test_config_alone_says_which_algorithm_runs():
    assert algorithm_for_config(VEMConfig()).name == "vem"
    assert algorithm_for_config(MCEMConfig()).name == "mcem"
    for name in available_algorithms():
        alg = get_algorithm(name)
        assert algorithm_for_config(alg.default_config()).step is alg.step
        assert isinstance(alg.default_config(), EMConfig)
    with pytest.raises(TypeError, match="no registered algorithm"):
        algorithm_for_config(EMConfig())


@pytest.mark.parametrize("bad", [{"iterations": 0}, {"nmf_rank": 0}, {"gain": "per-bin"},
                                 {"tol": -1.0}, {"init_noise_level": 0.0}, {"tol_window": 0}])
def test_shared_settings_are_checked_for_every_algorithm(bad):
    for name in available_algorithms():
        with pytest.raises(ValueError):
            get_algorithm(name).config_class(**bad)


class _Oracle(InferenceStep):
    """A test step whose E-step hands the driver a fixed speech variance: the driver alone
    then fits the NMF, applies the stopping rule and forms the Wiener gain."""

    config_class = VEMConfig
    batched = True

    def start(self, nmf):
        self.v = self.power.mean(dim=-1, keepdim=True).expand_as(self.power) * 0.5
        return nmf

    def e_step(self, nmf):
        vx = nmf.g * self.v + nmf.noise_variance()
        cost = (self.power / vx + torch.log(vx)).sum(dim=(1, 2)) / self.power[0].numel()
        return EStep(self.v[None], cost.tolist())

    def wiener_gain(self, nmf):
        return wiener_gain(nmf.noise_variance(), [nmf.g * self.v])


def test_driver_with_a_fixed_e_step_decreases_the_cost_and_stops():
    x = torch.randn(8000, generator=torch.Generator().manual_seed(0))
    spec = stft(x)[None]
    prior = VAE(VAEConfig(hidden_dims=(8,), latent_dim=2))
    cfg = VEMConfig(iterations=200, nmf_rank=2, tol=1e-4, tol_window=3)
    (res,) = run_em(_Oracle, prior, spec, [spec.shape[-1]], cfg,
                    [torch.Generator().manual_seed(1)])
    assert isinstance(res, EMResult)
    obj = res.objective
    assert all(b <= a + 1e-6 * abs(a) for a, b in itertools.pairwise(obj))  # MM: never up
    assert res.iterations < 200 and converged(obj, cfg.tol, cfg.tol_window)
    torch.testing.assert_close(res.speech + res.noise, spec)


def test_driver_checks_the_config_type():
    prior = VAE(VAEConfig(hidden_dims=(8,), latent_dim=2))
    spec = stft(torch.randn(4000))[None]
    with pytest.raises(TypeError, match="VEMConfig"):
        run_em(get_algorithm("vem").step, prior, spec, [spec.shape[-1]], MCEMConfig())


# -- layering -----------------------------------------------------------------------------

def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of each ``from ... import`` in a module."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        package = parts
    else:
        package = parts[:-1]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((mod, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_package_has_no_import_cycle():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for mod, names in _imports(path):
            for target in [mod] + [f"{mod}.{n}" for n in names]:
                if target in modules and target != name:
                    deps.add(target)
        # a package's __init__ imports its own modules: that is not a cycle through them
        graph[name] = {d for d in deps if name != d.rsplit(".", 1)[0]}
    # modules importing a package go through its __init__; drop edges into packages from
    # their own submodules (``from . import x`` inside the package)
    graph = {name: {d for d in deps if not name.startswith(d + ".")}
             for name, deps in graph.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n, stack):
        state[n] = 1
        for d in graph[n]:
            if state.get(d) == 1:
                cycle.extend(stack[stack.index(d):] + [d])
                return True
            if state.get(d) is None and visit(d, stack + [d]):
                return True
        state[n] = 2
        return False

    for n in sorted(graph):
        if state.get(n) is None and visit(n, [n]):
            break
    assert not cycle, " -> ".join(cycle)


def test_enhancement_knows_no_concrete_prior_and_no_private_name():
    concrete = {"VAE", "RVAE", "DKF", "SequentialPrior"} | {
        n for n in dir(speechvae.priors) if n.endswith(("VAE", "Config"))}
    for path in (PACKAGE / "enhancement").glob("*.py"):
        tree = ast.parse(path.read_text())
        for mod, names in _imports(path):
            assert not any(n.startswith("_") for n in names), (path.name, mod, names)
            if mod.startswith("speechvae.priors"):
                assert not set(names) & concrete, (path.name, names)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance":
                classes = {getattr(n, "id", getattr(n, "attr", None))
                           for n in ast.walk(node.args[1])}
                assert not classes & (concrete | {"Prior"}), (path.name, ast.unparse(node))
