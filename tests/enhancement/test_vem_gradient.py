"""The VEM E-step uses a closed-form gradient of the mixture term; check it against autograd."""
import torch

from speechvae.enhancement.model import init_nmf
from speechvae.priors import VAE, VAEConfig


def test_closed_form_mixture_gradient_equals_autograd():
    torch.manual_seed(0)
    prior = VAE(VAEConfig(hidden_dims=(32,), latent_dim=4)).double()
    power = torch.rand(1, 513, 20, dtype=torch.float64) * 10
    nmf = init_nmf(power, 3, torch.Generator().manual_seed(0))
    nmf.g = torch.rand(1, 1, 20, dtype=torch.float64) + 0.5
    eps = torch.randn(1, 4, 20, dtype=torch.float64)
    params = list(prior.encoder_parameters())

    def speech_variance():
        post = prior.encode(power)
        return prior.decode(post.mean + torch.exp(0.5 * post.logvar) * eps)

    vs = speech_variance()
    vx = nmf.g * vs + nmf.noise_variance()
    reference = torch.autograd.grad((power / vx + torch.log(vx)).sum(), params)
    vs = speech_variance()
    with torch.no_grad():
        inv = 1.0 / (nmf.g * vs + nmf.noise_variance())
        grad_vs = nmf.g * (inv - power * inv * inv)  # what vem() back-propagates
    closed_form = torch.autograd.grad([vs], params, [grad_vs])
    for a, b in zip(reference, closed_form):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_adam_equals_torch_adam():
    """vem's own Adam (no torch._dynamo import) follows torch.optim.Adam step for step."""
    from speechvae.enhancement.vem import Adam

    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    b = [p.detach().clone().requires_grad_(True) for p in a]
    ours, ref = Adam(a, lr=1e-2), torch.optim.Adam(b, lr=1e-2)
    for step in range(20):
        target = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        for params, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            ((params[0] * params[1] - target) ** 2).sum().backward()
            opt.step()
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
