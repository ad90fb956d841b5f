"""MCMC kernels and the MCEM / MALA-EM / Bando algorithms.

Samplers are checked against analytic posteriors: a linear-Gaussian toy model
(``z ~ N(0, I)``, ``y | z ~ N(A z, s^2 I)``, posterior Gaussian with known mean and
covariance) for the Metropolis–Hastings kernels, closed-form GIG moments for the GIG sampler,
and one-dimensional quadrature of the unnormalised conditionals (written from the model, not
from the derived GIG forms) for the Gibbs updates of the gamma-prior NMF. Moments are
compared within 4.5 standard errors, estimated from many independent chains (one draw per
chain), so the checks are deterministic under their fixed seeds and have a false-alarm rate
of about 1e-5 per comparison. A negative control shows that the check detects the bias of
the unadjusted Langevin algorithm at the step size used for MALA.
"""
from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch

import speechvae
from speechvae.enhancement import (
    BandoConfig,
    MALAConfig,
    MCEMConfig,
    VEMConfig,
    available_algorithms,
    get_algorithm,
    register_algorithm,
)
from speechvae.enhancement.em import InferenceStep
from speechvae.enhancement.gibbs import (
    _sample_sources_real,
    gamma_nmf_gain_conditional,
    gamma_nmf_h_conditional,
    gamma_nmf_w_conditional,
    sample_sources,
)
from speechvae.enhancement.model import (
    LatentPosterior,
    initial_noise,
    m_step,
    mixture_cost,
    time_major,
)
from speechvae.enhancement.samplers import (
    MarkovChain,
    autograd_log_density,
    init_state,
    mala_step,
    rw_metropolis_step,
    sample_gig,
)
from speechvae.priors import VAE, Prior, VAEConfig
from speechvae.stft import stft

torch.set_num_threads(1)
SR = 16000
NSE = 4.5  # standard errors allowed
SMALL = {
    "vem": VEMConfig(iterations=3, nmf_rank=3, wiener_samples=2),
    "mcem": MCEMConfig(iterations=3, nmf_rank=3, burnin=3, samples=2, final_burnin=3,
                       final_samples=2),
    "mala": MALAConfig(iterations=3, nmf_rank=3, chains=2, burnin=2, final_burnin=2,
                       final_samples=2),
    "bando": BandoConfig(iterations=6, samples=3, nmf_rank=3, init_iterations=2,
                         init_mh_steps=2),
}


# -- toy linear-Gaussian model ----------------------------------------------------------------

class GaussianToy:
    """``z ~ N(0, I)`` on ``(latent, time)``, ``y | z ~ N(A vec(z), s^2 I)``.

    ``factorised``: one ``A_t`` per frame acting on ``z_t`` (the posterior factorises over
    frames); else one dense ``A`` on the whole sequence (it does not).
    """

    def __init__(self, latent=2, time=3, factorised=True, s=0.5, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.latent, self.time, self.factorised, self.s = latent, time, factorised, s
        d = latent * time
        if factorised:
            self.A = torch.randn((time, 3, latent), generator=g, dtype=torch.float64)
            self.y = torch.randn((time, 3), generator=g, dtype=torch.float64) * 2
            prec = torch.zeros(d, d, dtype=torch.float64)
            rhs = torch.zeros(d, dtype=torch.float64)
            for t in range(time):
                idx = [k * time + t for k in range(latent)]  # vec(z) is latent-major
                prec[np.ix_(idx, idx)] = self.A[t].T @ self.A[t] / s**2
                rhs[idx] = self.A[t].T @ self.y[t] / s**2
        else:
            self.A = torch.randn((2 * d, d), generator=g, dtype=torch.float64) / math.sqrt(d)
            self.y = torch.randn(2 * d, generator=g, dtype=torch.float64) * 2
            prec = self.A.T @ self.A / s**2
            rhs = self.A.T @ self.y / s**2
        prec = prec + torch.eye(d, dtype=torch.float64)
        self.cov = torch.linalg.inv(prec)
        self.mean = self.cov @ rhs

    def log_density(self, z):
        """Per-frame terms ``(..., time)`` (factorised) or the total as ``(..., 1)``."""
        prior = -0.5 * z.square().sum(-2)
        if self.factorised:
            pred = torch.einsum("tol,...lt->...to", self.A, z)
            return prior - 0.5 * (self.y - pred).square().sum(-1) / self.s**2, None
        vec = z.reshape(*z.shape[:-2], -1)
        lik = -0.5 * (self.y - vec @ self.A.T).square().sum(-1) / self.s**2
        return (prior.sum(-1) + lik)[..., None], None

    def log_density_grad(self, z):
        """:meth:`log_density` with its gradient in closed form (faster than autograd)."""
        lp, _ = self.log_density(z)
        if self.factorised:
            resid = self.y - torch.einsum("tol,...lt->...to", self.A, z)
            grad = torch.einsum("tol,...to->...lt", self.A, resid) / self.s**2
        else:
            vec = z.reshape(*z.shape[:-2], -1)
            grad = ((self.y - vec @ self.A.T) @ self.A / self.s**2).reshape(z.shape)
        return lp, None, grad - z


def moments_match(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> bool:
    """Sample mean and covariance of independent draws ``(n, d)`` within ``NSE`` standard
    errors of the exact ones (SE of a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n))."""
    n = draws.shape[0]
    m = draws.mean(0)
    c = torch.cov(draws.T)
    sd = cov.diagonal().sqrt()
    se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov.square()) / n).sqrt()
    ok_mean = torch.all((m - mean).abs() <= NSE * sd / math.sqrt(n))
    ok_cov = torch.all((c - cov).abs() <= NSE * se_cov)
    return bool(ok_mean and ok_cov)


def run_independent_chains(toy, kernel, step, n_chains=4000, warm=100, steps=200,
                           target_accept=None, seed=0, with_grad=False):
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.zeros((n_chains, toy.latent, toy.time), dtype=torch.float64)
    density = toy.log_density_grad if with_grad else toy.log_density
    chain = MarkovChain(functools.partial(kernel, log_density=density,
                                          frame_factorised=toy.factorised),
                        init_state(density, z0, with_grad=with_grad),
                        step, gen, target_accept=target_accept)
    chain.warmup(warm)
    for _ in chain.sample(steps):
        pass
    return chain, chain.state.z.reshape(n_chains, -1)


def _rw(state, step, gen, log_density, frame_factorised, block=None):
    return rw_metropolis_step(state, log_density, step, gen, frame_factorised, block)


def _mala(state, step, gen, log_density, frame_factorised, block=None):
    return mala_step(state, log_density, step, gen, frame_factorised, block)


@pytest.mark.parametrize("factorised", [True, False])
def test_random_walk_metropolis_matches_gaussian_posterior(factorised):
    toy = GaussianToy(factorised=factorised)
    chain, draws = run_independent_chains(toy, _rw, 0.05)
    assert moments_match(draws, toy.mean, toy.cov)
    assert 0.2 < chain.last_accept < 0.95


@pytest.mark.parametrize("factorised", [True, False])
def test_mala_matches_gaussian_posterior_and_adapts_its_step(factorised):
    toy = GaussianToy(factorised=factorised)
    step = torch.full((1, 3) if factorised else (1, 1), 0.01, dtype=torch.float64)
    chain, draws = run_independent_chains(toy, _mala, step, target_accept=0.574,
                                          with_grad=True, steps=150)
    assert moments_match(draws, toy.mean, toy.cov)
    # warm-up brought the acceptance rate near the target, per frame or per sequence
    assert abs(chain.last_accept - 0.574) < 0.08
    assert chain.step_size.shape == step.shape and torch.all(chain.step_size > 0.01)


def test_moment_check_detects_unadjusted_langevin():
    """Negative control: ULA (MALA without the accept/reject step) at the step size MALA
    adapted to is biased enough for :func:`moments_match` to reject it."""
    toy = GaussianToy()
    step = torch.full((1, 3), 0.01, dtype=torch.float64)
    chain, draws = run_independent_chains(toy, _mala, step, target_accept=0.574,
                                          with_grad=True, steps=50)
    assert moments_match(draws, toy.mean, toy.cov)
    density = toy.log_density_grad
    gen = torch.Generator().manual_seed(1)
    z = chain.state.z.clone()
    eps = chain.step_size.unsqueeze(-2)
    for _ in range(150):
        _, _, grad = density(z)
        z = z + 0.5 * eps * grad + eps.sqrt() * torch.randn(z.shape, generator=gen,
                                                             dtype=z.dtype)
    assert not moments_match(z.reshape(z.shape[0], -1), toy.mean, toy.cov)


@pytest.mark.parametrize("kernel,with_grad", [(_rw, False), (_mala, True)])
def test_blocked_updates_of_a_non_factorised_target(kernel, with_grad):
    """Moving one block of frames at a time (cycling) with whole-sequence acceptance."""
    toy = GaussianToy(factorised=False)
    masks = [torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64),
             torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)]
    cycle = iter(masks * 1000)
    density = autograd_log_density(toy.log_density) if with_grad else toy.log_density

    def blocked(state, step, gen):
        return kernel(state, step, gen, density, False, next(cycle))

    gen = torch.Generator().manual_seed(3)
    z0 = torch.zeros((4000, 2, 3), dtype=torch.float64)
    chain = MarkovChain(blocked, init_state(density, z0, with_grad), 0.04, gen)
    chain.warmup(150)
    for _ in chain.sample(150):
        pass
    assert moments_match(chain.state.z.reshape(4000, -1), toy.mean, toy.cov)


@pytest.mark.parametrize("factorised", [True, False])
def test_toy_gradient_equals_autograd(factorised):
    toy = GaussianToy(factorised=factorised)
    z = torch.randn((5, 2, 3), dtype=torch.float64)
    lp, _, grad = toy.log_density_grad(z)
    lp_ref, _, grad_ref = autograd_log_density(toy.log_density)(z)
    torch.testing.assert_close(lp, lp_ref)
    torch.testing.assert_close(grad, grad_ref)


def test_kernels_move_only_accepted_frames_and_blocks():
    toy = GaussianToy()
    gen = torch.Generator().manual_seed(0)
    state = init_state(toy.log_density, torch.zeros((5, 2, 3), dtype=torch.float64))
    new, acc = rw_metropolis_step(state, toy.log_density, 0.5, gen, True,
                                  block=torch.tensor([0.0, 1.0, 0.0]))
    assert acc.shape == (5, 3) and torch.all(acc[:, [0, 2]] == 1)
    assert torch.equal(new.z[..., [0, 2]], state.z[..., [0, 2]])
    moved = (new.z != state.z).any(-2)  # (5, 3): frames that changed were accepted ones
    lp, _ = toy.log_density(new.z)
    torch.testing.assert_close(new.log_prob, lp)
    assert moved[:, 1].any()
    with pytest.raises(ValueError, match="gradient"):
        mala_step(state, autograd_log_density(toy.log_density), 0.1, gen)


# -- generalised inverse Gaussian ---------------------------------------------------------------

def gig_raw_moment(p, a, b, k):
    from scipy.special import kve

    om = math.sqrt(a * b)
    return (b / a) ** (k / 2) * kve(p + k, om) / kve(p, om)


@pytest.mark.parametrize("p,a,b", [
    (-300.0, 2.0, 600.0),  # the W / H conditionals: large negative order
    (2.5, 1.0, 4.0),  # ratio of uniforms with mode shift
    (3.0, 1e4, 1e4),  # very concentrated
    (0.5, 1.0, 0.7),  # ratio of uniforms without mode shift
    (0.3, 0.1, 0.1),  # three-piece hat
    (0.0, 0.05, 0.05),  # hat, order 0
    (-0.4, 0.2, 0.3),  # negative order through 1/x
])
def test_gig_sampler_moments(p, a, b):
    n = 20000
    x = sample_gig(torch.full((n,), p, dtype=torch.float64), torch.tensor(a), torch.tensor(b),
                   torch.Generator().manual_seed(0))
    assert x.dtype == torch.float64 and torch.all(x > 0)
    m1, m2, m3, m4 = (gig_raw_moment(p, a, b, k) for k in (1, 2, 3, 4))
    var = m2 - m1**2
    mu4 = m4 - 4 * m3 * m1 + 6 * m2 * m1**2 - 3 * m1**4
    assert abs(float(x.mean()) - m1) <= NSE * math.sqrt(var / n)
    assert abs(float(x.var()) - var) <= NSE * math.sqrt((mu4 - var**2) / n)


def test_gig_sampler_distribution_and_shapes():
    from scipy.stats import geninvgauss, kstest

    p, a, b = 1.5, 2.0, 3.0
    x = sample_gig(torch.full((2, 200), p), torch.tensor(a), torch.tensor(b),
                   torch.Generator().manual_seed(1))
    assert x.shape == (2, 200) and x.dtype == torch.float32
    # scipy's geninvgauss(p, omega) with scale sqrt(b / a)
    ref = geninvgauss(p, math.sqrt(a * b), scale=math.sqrt(b / a))
    assert kstest(x.double().flatten().numpy(), ref.cdf).pvalue > 1e-3
    y = sample_gig(torch.full((2, 200), p), torch.tensor(a), torch.tensor(b),
                   torch.Generator().manual_seed(1))
    assert torch.equal(x, y)
    with pytest.raises(ValueError, match="positive"):
        sample_gig(torch.ones(3), torch.tensor(0.0), torch.tensor(1.0))


# -- Bando's Gibbs conditionals ------------------------------------------------------------------

def test_sample_sources_conditional_moments_and_exact_sum():
    n = 40000
    lam = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    x0 = torch.tensor(1.5 - 0.7j, dtype=torch.complex128)
    variances = lam[None, :, None, None].expand(1, 3, 1, n)
    mixture = torch.full((1, 1, n), x0, dtype=torch.complex128)
    c = sample_sources(mixture, variances, torch.Generator().manual_seed(0))[0, :, 0]  # (3, n)
    torch.testing.assert_close(c.sum(0), mixture[0, 0], rtol=0, atol=1e-12)
    y = lam.sum()
    mean = lam / y * x0
    cov = torch.diag(lam) - lam[:, None] * lam[None, :] / y
    d = c - mean[:, None]
    for i in range(3):
        se = math.sqrt(cov[i, i] / 2 / n)  # real and imaginary parts each carry half
        assert abs(float(c[i].real.mean() - mean[i].real)) <= NSE * se
        assert abs(float(c[i].imag.mean() - mean[i].imag)) <= NSE * se
        for j in range(3):
            emp = (d[i] * d[j].conj()).mean()
            se_c = math.sqrt((cov[i, i] * cov[j, j] + cov[i, j] ** 2) / n)
            assert abs(float(emp.real - cov[i, j])) <= NSE * se_c
            assert abs(float(emp.imag)) <= NSE * se_c
    # the real-arithmetic path used by the sampler draws the same values
    parts = _sample_sources_real(mixture, variances, torch.Generator().manual_seed(0))
    torch.testing.assert_close(parts.square().sum(0)[0, :, 0], c.abs().square())


def posterior_moments_by_quadrature(log_density):
    """Mean and variance of a 1-D density on ``(0, inf)`` given unnormalised, by quadrature
    on a log grid (the density is written from the model, not from the GIG formula)."""
    x = np.exp(np.linspace(-12, 8, 400001))
    logf = log_density(x) + np.log(x)  # dx = x du
    w = np.exp(logf - logf.max())
    w /= w.sum()
    mean = float((w * x).sum())
    return mean, float((w * (x - mean) ** 2).sum())


def gamma_logpdf(x, shape, rate):
    return (shape - 1) * np.log(x) - rate * x


def exp_complex_loglik(power, var):
    """log N_c(c; 0, var) as a function of var, given |c|^2 = power (up to a constant)."""
    return -np.log(var) - power / var


def test_w_conditional_matches_quadrature():
    n, t = 20000, 5
    g = torch.Generator().manual_seed(0)
    powers_t = torch.rand(t, generator=g, dtype=torch.float64) * 3
    h = torch.rand(t, generator=g, dtype=torch.float64) + 0.5
    shape, rate = 1.5, 2.0
    # n identical frequency rows: n independent draws of the same conditional
    powers = powers_t.expand(1, 1, n, t)
    w = gamma_nmf_w_conditional(powers, h.expand(1, 1, t), shape, rate, g)
    assert w.shape == (1, n, 1)
    mean, var = posterior_moments_by_quadrature(lambda x: gamma_logpdf(x, shape, rate) + sum(
        exp_complex_loglik(float(powers_t[i]), x * float(h[i])) for i in range(t)))
    assert abs(float(w.mean()) - mean) <= NSE * math.sqrt(var / n)
    assert abs(float(w.var()) - var) <= NSE * var * math.sqrt(3.0 / n)


def test_h_conditional_matches_quadrature():
    n, f = 20000, 6
    g = torch.Generator().manual_seed(1)
    powers_f = torch.rand(f, generator=g, dtype=torch.float64) * 2
    w = torch.rand(f, generator=g, dtype=torch.float64) + 0.2
    shape, rate = 0.8, 1.0
    powers = powers_f[:, None].expand(1, 1, f, n)
    h = gamma_nmf_h_conditional(powers, w.reshape(1, f, 1), shape, rate, g)
    assert h.shape == (1, 1, n)
    mean, var = posterior_moments_by_quadrature(lambda x: gamma_logpdf(x, shape, rate) + sum(
        exp_complex_loglik(float(powers_f[i]), x * float(w[i])) for i in range(f)))
    assert abs(float(h.mean()) - mean) <= NSE * math.sqrt(var / n)
    assert abs(float(h.var()) - var) <= NSE * var * math.sqrt(3.0 / n)


def test_gain_conditional_matches_quadrature():
    n, f = 20000, 4
    g = torch.Generator().manual_seed(2)
    speech_f = torch.rand(f, generator=g, dtype=torch.float64) * 4
    v = torch.rand(f, generator=g, dtype=torch.float64) + 0.3
    shape, rate = 2.0, 1.0
    gain = gamma_nmf_gain_conditional(speech_f[:, None].expand(1, f, n),
                                      v[:, None].expand(1, f, n), shape, rate, g)
    assert gain.shape == (1, 1, n)
    mean, var = posterior_moments_by_quadrature(lambda x: gamma_logpdf(x, shape, rate) + sum(
        exp_complex_loglik(float(speech_f[i]), x * float(v[i])) for i in range(f)))
    assert abs(float(gain.mean()) - mean) <= NSE * math.sqrt(var / n)
    glob = gamma_nmf_gain_conditional(speech_f[:, None].expand(1, f, 3),
                                      v[:, None].expand(1, f, 3), shape, rate, g,
                                      global_gain=True)
    assert glob.shape == (1, 1, 3) and torch.all(glob == glob[..., :1])


# -- the algorithms on a tiny random prior ---------------------------------------------------

def _tiny_vae(cls=VAE, seed=0):
    torch.manual_seed(seed)
    return cls(VAEConfig(hidden_dims=(32,), latent_dim=4)).eval()


class SequenceVAE(VAE):
    """The VAE declared non-factorised: exercises whole-sequence and blocked acceptance."""

    frame_factorised = False


@pytest.fixture(scope="module")
def prior():
    return _tiny_vae()


def _mixture(seconds=1.0, seed=0):
    from conftest import speech_like

    return speech_like(seconds, noise=0.1, seed=seed)


def _spec(x):
    x = torch.from_numpy(x / np.max(np.abs(x)))
    return stft(x)[None]


def test_prior_frame_factorisation_flags():
    assert VAE.frame_factorised is True
    assert Prior.frame_factorised is False


def test_mcem_samples_never_increase_the_m_step_cost(prior):
    spec = _spec(_mixture())
    power = time_major(spec.abs().square())
    gen = torch.Generator().manual_seed(0)
    nmf = initial_noise(power, [power.shape[-1]], 4, 1.0, [gen])
    target = LatentPosterior(prior, power, nmf)
    chain = MarkovChain(functools.partial(_rw, log_density=target, frame_factorised=True),
                        init_state(target, prior.encode(power).mean.detach()), 0.01, gen)
    chain.warmup(10)
    vs = torch.stack([s.aux for s in chain.sample(6)])
    cost = mixture_cost(power, vs, nmf)
    for _ in range(15):
        nmf = m_step(power, vs, nmf)
        new = mixture_cost(power, vs, nmf)
        assert torch.all(new <= cost + 1e-5 * cost.abs())
        cost = new


def test_latent_posterior_gradient_equals_autograd(prior):
    power = time_major(_spec(_mixture()).abs().square()).double()
    local = _tiny_vae().double()
    nmf = initial_noise(power, [power.shape[-1]], 3, 1.0, [torch.Generator().manual_seed(0)])
    target = LatentPosterior(local, power, nmf)
    z = torch.randn((2, 1, 4, power.shape[-1]), dtype=torch.float64)
    lp, v, grad = target.with_grad(z)

    def reference(z):  # the target written out, differentiated by autograd
        v = local.decode(z)
        vx = nmf.g * v + nmf.W @ nmf.H
        return -(torch.log(vx) + power / vx).sum(-2) + local.log_prior(z), v

    lp_ref, v_ref, grad_ref = autograd_log_density(reference)(z)
    torch.testing.assert_close(lp, lp_ref)
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(grad, grad_ref, rtol=1e-9, atol=1e-9)
    lp_plain, v_plain = target(z)
    torch.testing.assert_close(lp_plain, lp_ref)
    torch.testing.assert_close(v_plain, v_ref)


@pytest.mark.parametrize("name", ["mcem", "mala", "bando"])
def test_seeded_runs_reproduce_exactly(prior, name):
    spec = _spec(_mixture())
    run = get_algorithm(name).run
    a = run(prior, spec, SMALL[name], torch.Generator().manual_seed(3))
    b = run(prior, spec, SMALL[name], torch.Generator().manual_seed(3))
    c = run(prior, spec, SMALL[name], torch.Generator().manual_seed(4))
    assert torch.equal(a.speech, b.speech) and a.objective == b.objective
    assert not torch.equal(a.speech, c.speech)
    assert len(a.objective) == a.iterations and all(np.isfinite(a.objective))
    assert len(a.acceptance) == a.iterations
    assert all(0 <= r <= 1 for r in a.acceptance)
    torch.testing.assert_close(a.speech + a.noise, spec, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_algorithm_through_enhance(prior, name):
    x = _mixture(1.0, seed=1)
    res = speechvae.enhance(x, SR, prior=prior, algorithm=name, config=SMALL[name], seed=2)
    assert res.waveform.shape == x.shape and res.noise.shape == x.shape
    assert np.all(np.isfinite(res.waveform)) and np.any(res.waveform)
    np.testing.assert_allclose(res.waveform + res.noise, x, atol=1e-4)
    assert res.iterations == [SMALL[name].iterations]


def test_registry_covers_every_algorithm_and_checks_configs(prior):
    assert available_algorithms() == ["bando", "mala", "mcem", "vem"]
    assert speechvae.available_algorithms() == available_algorithms()
    assert speechvae.MCEMConfig is MCEMConfig and speechvae.BandoConfig is BandoConfig
    for name in available_algorithms():
        alg = get_algorithm(name)
        cfg = alg.default_config()
        assert cfg.iterations >= 1 and cfg.nmf_rank >= 1 and alg.summary
    with pytest.raises(KeyError, match="unknown algorithm 'gibbs'; registered: bando"):
        get_algorithm("gibbs")
    with pytest.raises(TypeError, match="MCEMConfig"):
        speechvae.enhance(_mixture(), SR, prior=prior, algorithm="mcem", config=VEMConfig())
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm("mcem")(type("OtherMCEM", (InferenceStep,),
                                        {"config_class": MCEMConfig}))
    with pytest.raises(TypeError, match="InferenceStep"):
        register_algorithm("not-a-step")(object)
    with pytest.raises(ValueError, match="gain"):
        MCEMConfig(gain="per-bin")
    with pytest.raises(ValueError, match="burnin"):
        MALAConfig(burnin=-1)


def test_vem_stays_the_default(prior):
    x = _mixture(1.0, seed=3)
    cfg = SMALL["vem"]
    a = speechvae.enhance(x, SR, prior=prior, config=cfg, seed=1)
    b = speechvae.enhance(x, SR, prior=prior, config=cfg, seed=1, algorithm="vem")
    np.testing.assert_array_equal(a.waveform, b.waveform)


@pytest.mark.parametrize("block_frames", [None, 16])
def test_non_factorised_prior_runs_every_sampler(block_frames):
    prior = _tiny_vae(SequenceVAE)
    spec = _spec(_mixture(0.5))
    for name in ("mcem", "mala", "bando"):
        from dataclasses import replace

        cfg = replace(SMALL[name], block_frames=block_frames)
        res = get_algorithm(name).run(prior, spec, cfg, torch.Generator().manual_seed(0))
        assert torch.all(torch.isfinite(res.speech.abs()))
        if name == "mala":  # one step size per sequence
            assert res.step_size.shape == (1, 1, 1)


def test_mala_adapts_a_step_per_frame(prior):
    spec = _spec(_mixture(0.5))
    res = get_algorithm("mala").run(prior, spec, SMALL["mala"], torch.Generator().manual_seed(0))
    assert res.step_size.shape == (1, 1, spec.shape[-1])
    assert not torch.all(res.step_size == SMALL["mala"].step_size)


def test_sampling_algorithms_reject_wrong_shapes(prior):
    spec = _spec(_mixture())
    for name in ("mcem", "mala", "bando"):
        run = get_algorithm(name).run
        with pytest.raises(ValueError, match="shape"):
            run(prior, spec[0], SMALL[name])
        with pytest.raises(ValueError, match="frequency"):
            run(prior, spec[:, :257], SMALL[name])


# -- command line ---------------------------------------------------------------------------------

def test_cli_algorithm_option(tmp_path, invoke, tiny_prior):
    from conftest import write_wav

    noisy = write_wav(tmp_path / "noisy.wav")
    out = tmp_path / "out.wav"
    result = invoke("enhance", noisy, "-o", out, "--prior", tiny_prior, "--algorithm", "mcem",
                    "--iterations", 2, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["algorithm"] == "mcem"
    assert summary["config"]["iterations"] == 2 and summary["config"]["burnin"] == 30
    assert summary["files"][0]["iterations"] == [2]
    assert out.is_file()


def test_cli_rejects_unknown_algorithm(tmp_path, invoke, tiny_prior, expect_error):
    from conftest import write_wav

    noisy = write_wav(tmp_path / "noisy.wav")
    line = expect_error(invoke("enhance", noisy, "--prior", tiny_prior, "--algorithm", "gibbs"),
                        "gibbs", "vem", exit_code=2)
    assert "mcem" in line
    assert not (tmp_path / "noisy_enhanced.wav").exists()
    help_text = invoke("enhance", "--help").stdout
    for name in available_algorithms():
        assert name in help_text
